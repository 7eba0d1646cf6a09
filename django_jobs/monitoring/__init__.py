"""What the brokers say about themselves, read over the admin protocol: the
``gearman_server_info`` report and the admin dashboard's panels."""
