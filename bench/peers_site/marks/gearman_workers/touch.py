"""spoolgear, django-gearman-jbox style: ``gearman_worker -a marks -n touch``."""

from django_jobs import gearman_task
from marks.record import record


@gearman_task
def touch(stamp: float) -> None:
    record(stamp)
