"""The trivial task both workers of ``bench/django_worker.py`` serve."""

from django_jobs import gearman_task

TASK_NAME = "benchapp.trivial.noop"


@gearman_task
def noop(number: int) -> int:
    return number
