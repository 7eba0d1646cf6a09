"""``@task`` functions outside ``gearman_workers``, as uwsgi_tasks projects keep them
(``apps/index/tasks.py``): served by ``gearman_worker -a shop -n tasks``."""

from django_jobs.tasks import task


@task
def ping():
    return "pong"
