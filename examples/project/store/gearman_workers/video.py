"""A long task that reports its progress (WORK_STATUS), for a client to show."""

import time

from django_jobs import gearman_task
from django_jobs.runner import current_job


@gearman_task(queue="video")
def transcode(name: str, steps: int = 10, step_seconds: float = 0.1) -> str:
    job = current_job()
    for step in range(1, steps + 1):
        time.sleep(step_seconds)  # the real work would go here
        job.send_status(step, steps)
    return f"{name.rsplit('.', 1)[0]}.webm"
