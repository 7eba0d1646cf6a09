"""Huey through its Django app (``HUEY`` in settings, ``manage.py run_huey``)."""

from huey.contrib.djhuey import task

from marks.record import record


@task()
def touch(stamp: float) -> None:
    record(stamp)
