"""``@gearman_task``: marks functions of a ``gearman_workers`` module as Gearman tasks.

Decorating only records the task; nothing is imported or connected. The
default name follows django-gearman-jbox: the module path without its
``gearman_workers`` (or django-gearman's ``gearman_jobs``) part, a dot, the
function name, so ``shop.gearman_workers.mail.send`` is ``shop.mail.send``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from django.core.exceptions import ImproperlyConfigured

from broker.gearman.function_names import claim
from django_jobs.sending.serialization import Call

DEFAULT_QUEUE = "default"
WORKERS_PACKAGE = "gearman_workers"
LEGACY_JOBS_MODULE = "gearman_jobs"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class RegisteredTask:
    name: str
    """The task's name (before ``GEARMAN_JOB_NAME`` / ``GEARMAN_CLIENT_NAMESPACE``)."""
    queue: str
    """A local grouping: ``gearman_worker -q`` picks the queues a process serves."""
    function: Callable[..., Any]
    run: Callable[[Call], Any] | None = None
    """How a worker runs a decoded call; None calls ``function(*args, **kwargs)``
    (``@task`` functions bring their retry policy here)."""

    @property
    def module(self) -> str:
        return str(self.function.__module__)

    def execute(self, call: Call) -> Any:
        if self.run is not None:
            return self.run(call)
        return self.function(*call.args, **call.kwargs)


_tasks: dict[str, RegisteredTask] = {}


def default_name(function: Callable[..., Any]) -> str:
    parts = [
        part
        for part in function.__module__.split(".")
        if part not in (WORKERS_PACKAGE, LEGACY_JOBS_MODULE)
    ]
    return ".".join([*parts, function.__name__])


def register(
    function: F, name: str | None, queue: str | None, run: Callable[[Call], Any] | None = None
) -> RegisteredTask:
    """Record ``function`` as a task; returns the record."""
    task = RegisteredTask(name or default_name(function), queue or DEFAULT_QUEUE, function, run)
    try:
        claim(_tasks, task.name, task, lambda known: known.function, "tasks")
    except ValueError as exc:
        raise ImproperlyConfigured(str(exc)) from None
    return task


def _register(function: F, name: str | None, queue: str | None) -> F:
    register(function, name, queue)
    return function


@overload
def gearman_task(function: F, /) -> F: ...
@overload
def gearman_task(*, name: str | None = None, queue: str | None = None) -> Callable[[F], F]: ...


def gearman_task(
    function: F | None = None, /, *, name: str | None = None, queue: str | None = None
) -> F | Callable[[F], F]:
    """Register a task; usable as ``@gearman_task`` or ``@gearman_task(name=..., queue=...)``."""
    if function is not None:
        return _register(function, None, None)
    return lambda f: _register(f, name, queue)


def gearman_job(queue: str | F | None = None, name: str | None = None) -> Any:
    """django-gearman's spelling, whose first argument is the queue: ``@gearman_job("mail")``."""
    if callable(queue):
        return _register(queue, None, None)
    return gearman_task(name=name, queue=queue)


def tasks() -> list[RegisteredTask]:
    """Every registered task, sorted by name."""
    return sorted(_tasks.values(), key=lambda task: task.name)


def tasks_of_module(module: str) -> list[RegisteredTask]:
    return [task for task in tasks() if task.module == module]


def find_task(name: str) -> RegisteredTask | None:
    return _tasks.get(name)
