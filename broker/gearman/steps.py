"""Steps a ``Worker`` runs around every job, written once for every kind of worker.

A step is a function of the job that returns a context manager: entered before the job,
exited after it, and seeing any exception the job raises (to log, to clean up, to cut a
process off). ``Worker(steps=[...])`` enters them in order around each job, as
dramatiq's middleware wraps each message; the steps that run for every job are small
classes, cheaper per job than generators.
``manage.py gearman_worker`` and ``spoolgear spooler`` build their workers from these,
each with its own parameters; the task API's per-call working directory is
``working_directory`` too, and ``time_limit`` cuts off the spooler's handlers
(``--harakiri``) and a Tasks framework task's run (``time_limit``).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import os
import signal
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

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


class tracking_current_job:
    """``current_job()`` is ``job`` while it runs, in whatever the task calls. Every
    ``Worker`` runs it first; a class, not a generator, as it runs for every job."""

    __slots__ = ("job", "token")

    def __init__(self, job: WorkerJob) -> None:
        self.job = job

    def __enter__(self) -> None:
        self.token = _current_job.set(self.job)

    def __exit__(self, *exc_info: object) -> None:
        _current_job.reset(self.token)


class closing_stale_database_connections:
    """Drop Django's database connections that went stale, before and after a job (as
    Django does around a request), for workers of a process that set Django up. Django
    is imported by name when first needed: the broker package does not depend on it."""

    __slots__ = ()

    def __init__(self, job: WorkerJob) -> None:
        pass

    def __enter__(self) -> None:
        _close_old_connections()

    def __exit__(self, *exc_info: object) -> None:
        _close_old_connections()


@functools.cache
def _django_db() -> Any:
    return importlib.import_module("django.db")


def _close_old_connections() -> None:
    _django_db().close_old_connections()


class TimeLimitExceeded(Exception):
    """A run went past its time limit and was cut off (its attempt failed)."""


@contextlib.contextmanager
def time_limit(seconds: float | None, what: str = "the job") -> Iterator[None]:
    """Cut the code inside off after ``seconds`` with ``TimeLimitExceeded`` (SIGALRM, in
    the main thread: uWSGI's ``harakiri``, a task's ``time_limit``); nothing when None."""
    if seconds is None:
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeLimitExceeded(f"{what} ran longer than its time limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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
