"""procrastinate through its Django app (the project's database, ``manage.py procrastinate
worker``)."""

from procrastinate.contrib.django import app

from marks.record import record


@app.task(queue="default")
def touch(stamp: float) -> None:
    record(stamp)
