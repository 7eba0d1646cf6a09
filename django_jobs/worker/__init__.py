"""The worker side: the Gearman worker ``manage.py gearman_worker`` runs, what it does
for each job, and the supervisord programs that keep a pool of them up."""
