"""What a view calls to queue the benchmarked task, per system: one durable job per call."""

from collections.abc import Callable
from importlib import import_module
from typing import Any

from django.conf import settings

from marks.apps import TASK_MODULES

Enqueue = Callable[[float], object]


def enqueuer() -> Enqueue:
    system = settings.SYSTEM
    touch: Any = import_module(TASK_MODULES[system]).touch
    if system == "jbox":
        from django_jobs.client import GearmanClient

        client = GearmanClient()  # one per thread, kept, as the docs say
        return lambda stamp: client.submit_job("marks.touch.touch", stamp, background=True)
    calls: dict[str, Enqueue] = {
        "tasks-framework": lambda stamp: touch.enqueue(stamp),
        "django-tasks-db": lambda stamp: touch.enqueue(stamp),
        "celery": lambda stamp: touch.delay(stamp),
        "rq": lambda stamp: import_module("marks.rq_jobs").queue.enqueue(touch, stamp),
        "dramatiq": lambda stamp: touch.send(stamp),
        "procrastinate": lambda stamp: touch.defer(stamp=stamp),
    }
    # spoolgear's task API and Huey: calling the task queues it
    return calls.get(system, lambda stamp: touch(stamp))
