"""uwsgi_tasks' public names in one place: ``from uwsgi_tasks import *`` becomes
``from django_jobs.uwsgi_tasks import *`` and the rest of the code stays.

``set_uwsgi_callbacks()`` has nothing to do here (workers find tasks by name, not
through uWSGI's spooler and mule hooks) and is kept so project packages that call
it import unchanged; ``django_setup()`` is uwsgi_tasks' helper for processes that
start outside Django. What differs is in docs/moving-over.md.
"""

from __future__ import annotations

import os

import django
from django.apps import apps

from django_jobs.task_api.schedules import cron, cron_lazy, timer, timer_lazy
from django_jobs.task_api.tasks import (
    SPOOL_IGNORE,
    SPOOL_OK,
    SPOOL_RETRY,
    RetryTaskException,
    TaskExecutor,
    get_current_task,
    task,
)

__all__ = [
    "SPOOL_IGNORE",
    "SPOOL_OK",
    "SPOOL_RETRY",
    "RetryTaskException",
    "TaskExecutor",
    "cron",
    "cron_lazy",
    "django_setup",
    "get_current_task",
    "set_uwsgi_callbacks",
    "task",
    "timer",
    "timer_lazy",
]


def set_uwsgi_callbacks() -> None:
    """uwsgi_tasks hooked uWSGI's spooler and mule callbacks here; spoolgear needs none."""


def django_setup(settings_module: str | None = None) -> None:
    """Set Django up in a process that did not start through it (uwsgi_tasks' helper)."""
    if settings_module:
        os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    if not apps.ready:
        django.setup()
