"""Django's Tasks framework (the django-tasks backport on Django 5.2), on spoolgear's backend
or django-tasks-db's, whichever ``TASKS`` names."""

from django_tasks import task

from marks.record import record


@task
def touch(stamp: float) -> None:
    record(stamp)
