"""Django's Tasks framework (the django-tasks backport on Django 5.2), on spoolgear's backend
or django-tasks-db's, whichever ``TASKS`` names; in gearman_workers/, where spoolgear's
workers look for task modules (``gearman_worker --tasks-queue default``)."""

from django_tasks import task

from marks.record import record


@task
def touch(stamp: float) -> None:
    record(stamp)
