"""Tasks of the shop app's mail worker (queue "default" unless said otherwise)."""

import time
from pathlib import Path

from django.db import connection

from django_jobs import gearman_task
from django_jobs.runner import current_job


@gearman_task
def echo(*args, **kwargs):
    return {"args": args, "kwargs": kwargs}


@gearman_task(name="mail.send", queue="outbox")
def send(outbox, to, subject=""):
    with open(outbox, "a") as file:
        file.write(f"{to}|{subject}\n")
    return "sent"


@gearman_task()
def explode(message):
    raise ValueError(message)


@gearman_task
def slow(seconds, started_marker):
    Path(started_marker).write_text("started")
    time.sleep(seconds)
    return f"slept {seconds}"


@gearman_task
def progress(steps):
    job = current_job()
    for step in range(1, steps + 1):
        job.send_data(f"step {step}")
        job.send_status(step, steps)
    return steps


@gearman_task
def database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 40 + 2")
        return cursor.fetchone()[0]
