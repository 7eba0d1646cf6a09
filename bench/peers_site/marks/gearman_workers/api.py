"""spoolgear's task API (uwsgi_tasks style), a durable background job per call:
``gearman_worker -a marks -n api``."""

from django_jobs.tasks import TaskExecutor, task
from marks.record import record


@task(executor=TaskExecutor.SPOOLER)
def touch(stamp: float) -> None:
    record(stamp)
