"""Steps a ``Worker`` runs around every job, written once for every kind of worker.

A step is a function of the job that returns a context manager: what comes before its
``yield`` runs before the job, what follows after it, and an exception the job raises
passes through it (to log, to clean up, to cut a process off). ``Worker(steps=[...])``
enters them in order around each job, as dramatiq's middleware wraps each message.
``manage.py gearman_worker`` and ``spoolgear spooler`` build their workers from these,
each with its own parameters; the task API's per-call working directory is
``working_directory`` too.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.gearman.worker import WorkerJob

JobStep = Callable[["WorkerJob"], contextlib.AbstractContextManager[None]]

_current_job: contextvars.ContextVar[WorkerJob] = contextvars.ContextVar("spoolgear_job")


def current_job() -> WorkerJob:
    """The job being run, for progress (``send_status``) and streamed data (``send_data``)."""
    try:
        return _current_job.get()
    except LookupError:
        raise RuntimeError("current_job() is only available inside a running task") from None


@contextlib.contextmanager
def tracking_current_job(job: WorkerJob) -> Iterator[None]:
    """``current_job()`` is ``job`` while it runs, in whatever the task calls."""
    token = _current_job.set(job)
    try:
        yield
    finally:
        _current_job.reset(token)


@contextlib.contextmanager
def closing_stale_database_connections(job: WorkerJob) -> Iterator[None]:
    """Drop Django's database connections that went stale, before and after a job (as
    Django does around a request). Django is looked up, never imported here: the broker
    package does not depend on it, and a process that did not set it up has nothing to
    close."""
    django_db = sys.modules.get("django.db")
    if django_db is None or not _django_is_set_up():
        yield
        return
    django_db.close_old_connections()
    try:
        yield
    finally:
        django_db.close_old_connections()


def _django_is_set_up() -> bool:
    apps = importlib.import_module("django.apps").apps
    return bool(apps.ready)


@contextlib.contextmanager
def working_directory(path: str | None) -> Iterator[None]:
    """Run in ``path`` (uWSGI's ``spooler-chdir``, uwsgi_tasks' ``working_dir``) and come
    back after; nothing when ``path`` is None."""
    if path is None:
        yield
        return
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)
