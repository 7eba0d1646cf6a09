"""The uwsgi_tasks-style task API: ``@task`` with executors, ``at``, priorities and
retries, the calls it makes, timers and cron, mules and farms, and the ``uwsgi_tasks``
drop-in. Users import it by its public paths (``django_jobs.tasks``, ...)."""
