"""Scheduled tasks (``@timer`` / ``@cron``) of the shop app; each run appends a line to
$TICKS_FILE: the task, the argument it got and the job handle it ran as."""

import os

from django_jobs.runner import current_job
from django_jobs.schedules import cron, timer, timer_lazy


def _tick(name, *args):
    with open(os.environ["TICKS_FILE"], "a") as ticks:
        ticks.write(f"{name} {args} {current_job().handle}\n")


@timer(seconds=1, signal=7)
def heartbeat(signum):
    _tick("heartbeat", signum)


@cron(minute=-5, hour=-2)
def every_five_minutes_of_even_hours():
    _tick("every_five_minutes_of_even_hours")


@timer_lazy(seconds=60)
def twice():
    _tick("twice")
