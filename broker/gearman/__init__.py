"""The blocking Gearman side, for any Gearman server: the client (``client``), the worker
(``worker``), the admin client (``admin_client``), the one blocking connection they share
(``connection``), one function per name (``function_names``) and schedules registered by
starting workers (``schedule_registration``). Users import ``broker.client``,
``broker.worker`` and ``broker.admin``, which are these modules."""
