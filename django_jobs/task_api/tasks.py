"""``@task``: the uwsgi_tasks API over the broker, with sound semantics.

    @task(retry_count=3, retry_timeout=10, retry_backoff=2)
    def import_feed(url): ...

    import_feed("https://...")          # queued as a durable background job; returns a TaskCall
    import_feed.apply("https://...")    # run here and now, returns the result

Differences from uwsgi_tasks, on purpose: ``AUTO`` prefers the durable
broker and runs inline only when no server answers (``GEARMAN_TASKS_INLINE_FALLBACK``);
``retry_count`` counts retries *after* the first run; any exception is retried
by that policy and then lands in the broker's failed list with its traceback
(never dropped); ``RetryTaskException(count=N)`` sets the retry budget instead
of granting N more, so re-raising it always ends; ``at`` and retry delays are
honoured to the second by the broker, not by a 30-second scan; a naive ``at``
is in Django's current time zone; ``working_dir`` is unset unless given (the
web process's directory means nothing on a worker host); the current task is
found from anywhere inside it (a context variable, not a frame lookup).
"""

from __future__ import annotations

import enum
import functools
import logging
import time
import traceback
from collections.abc import Callable
from typing import Any, overload

from django.conf import settings

from broker.errors import ConnectionFailed, RetryLater, WorkFailed
from broker.gearman.client import JobHandle
from broker.gearman.retries import retry_or_give_up
from broker.gearman.steps import current_job
from broker.gearman.workflows import leading_arguments, own_and_previous
from broker.uwsgi_compat.decorators import SPOOL_IGNORE, SPOOL_OK, SPOOL_RETRY
from django_jobs.conf import farm_function, job_settings, mule_function
from django_jobs.jobs.discovery import check_served
from django_jobs.jobs.registry import register
from django_jobs.sending.client import Job
from django_jobs.sending.serialization import WORKFLOW, Call, PayloadError, loads_result
from django_jobs.sending.submission import NoConsumer, QueueFull, submit_background
from django_jobs.task_api.call_setup import CallSetup, seconds
from django_jobs.task_api.calls import RetryTaskException, TaskCall, get_current_task, running

log = logging.getLogger("django_jobs.tasks")
__all__ = [
    "SPOOL_IGNORE",
    "SPOOL_OK",
    "SPOOL_RETRY",
    "NoConsumer",
    "QueueFull",
    "RetryTaskException",
    "TaskCall",
    "TaskExecutor",
    "get_current_task",
    "task",
]


class TaskExecutor(enum.IntEnum):
    """Where a call runs (uwsgi_tasks' numbers)."""

    AUTO = 1
    """The broker when a server answers, else inline (see GEARMAN_TASKS_INLINE_FALLBACK)."""
    SPOOLER = 2
    """A durable background job on the broker."""
    MULE = 3
    """A transient job for a mule (``mule=ID`` setup, None: any) or a farm (``farm=NAME``):
    held in the broker's memory only, bounded, lost if the broker restarts."""
    RUNTIME = 4
    """Inline, in the calling process (tests, shells)."""


class Task:
    """What ``@task`` returns: call it (or ``.delay``) to queue, ``.apply`` to run inline."""

    served_by = (
        "it is a django_jobs task, which `manage.py gearman_worker` serves (for a "
        "timer beside spool handlers use broker.uwsgidecorators.timer)"
    )
    """Why ``spoolgear spooler`` refuses to treat it as a uwsgi_tasks handler."""

    def __init__(
        self, function: Callable[..., Any], executor: TaskExecutor, setup: dict[str, Any]
    ) -> None:
        try:  # a bad setup fails the import, not a web request
            self.setup = CallSetup.parse({k: v for k, v in setup.items() if k != "name"})
        except ValueError as exc:
            raise ValueError(f"@task {function.__qualname__}: {exc}") from None
        self.function = function
        self.executor = executor
        self.registered = register(
            function, setup.get("name"), setup.get("queue"), run=self.run_job
        )
        self.name = self.registered.name
        functools.update_wrapper(self, function)

    def __call__(self, *args: Any, **kwargs: Any) -> TaskCall:
        return self.delay(*args, **kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> TaskCall:
        """Queue a call (or run it inline, per the executor); returns the ``TaskCall``."""
        return self.enqueue(TaskCall(self, list(args), kwargs, self.setup.copy()))

    def apply(self, *args: Any, **kwargs: Any) -> Any:
        """Run now in this process and return the result; exceptions propagate."""
        call = TaskCall(self, list(args), kwargs, self.setup.copy())
        self._run_inline(call)
        return call.result

    def enqueue(self, call: TaskCall) -> TaskCall:
        if self.executor is TaskExecutor.RUNTIME:
            self._run_inline(call)
            return call
        check_served(self.registered)
        try:
            call.handle = _submit(self, call, job_settings().client_servers)
        except ConnectionFailed:
            if self.executor is TaskExecutor.SPOOLER or not getattr(
                settings, "GEARMAN_TASKS_INLINE_FALLBACK", True
            ):
                raise
            log.warning("no Gearman server answered; running %s inline", self.name)
            self._run_inline(call)
        return call

    def _run_inline(self, call: TaskCall) -> None:
        with running(call):
            call.result = self.function(*call.args, **call.kwargs)

    def run_job(self, received: Call) -> Any:
        """A worker runs a queued call: apply the return-code and retry policy."""
        try:
            setup = CallSetup.parse(received.setup)
        except ValueError as exc:
            raise PayloadError(f"{self.name}: {exc}") from None
        call = TaskCall(self, received.args, received.kwargs, setup)
        if setup.extra.get(WORKFLOW):
            call.args = [*self._ran_after(call), *call.args]
        try:
            with running(call):
                result = self.function(*call.args, **call.kwargs)
        except RetryTaskException as exc:
            if exc.count is not None:  # the whole budget, so raising it again always ends
                call.retry_count = exc.count
            self._retry(
                call, "RetryTaskException", None if exc.timeout is None else seconds(exc.timeout)
            )
            return None
        except Exception:
            self._retry(call, traceback.format_exc(), None)
            return None
        if isinstance(result, TaskCall):  # uwsgi_tasks' ``return current_task(...)`` idiom
            return None
        if result == SPOOL_RETRY:
            self._retry(call, "returned SPOOL_RETRY", None)
            return None
        if call.setup.spooler_return and result not in (SPOOL_OK, SPOOL_IGNORE):
            raise WorkFailed(
                f"{self.name} has spooler_return=True but returned {result!r}, "
                "not SPOOL_OK, SPOOL_RETRY or SPOOL_IGNORE"
            )
        return result

    def _ran_after(self, call: TaskCall) -> list[Any]:
        """A chain's or group's step: what it gets before its own arguments (the previous
        step's result; a group callback, its members' ``JobState``). The broker counts its
        attempts, since a step retries as the same job."""
        own, states = own_and_previous(current_job(), tls=job_settings().tls)
        call.setup.attempt = max(1, own.attempts) if own is not None else 1
        serializer = job_settings().serializer
        return leading_arguments(
            own, states, lambda value: loads_result(value, serializer), lambda state: state
        )

    def _retry(self, call: TaskCall, reason: str, delay: float | None) -> None:
        """Queue the next attempt as a new delayed job, or fail the job (to the failed
        list) when none is left."""
        attempts = call.retry_count + 1
        retry_or_give_up(
            log,
            self.name,
            attempt=call.attempt,
            attempts=attempts,
            reason=reason,
            delay=call.setup.retry_delay() if delay is None else delay,
            resubmit=lambda delay: self._again(call, reason, delay),
            give_up=lambda: WorkFailed(
                f"{self.name} failed on attempt {call.attempt} of {attempts}: {reason}"
            ),
        )

    def _again(self, call: TaskCall, reason: str, delay: float) -> None:
        """The next attempt: a new delayed job carrying the buffer, or for a chain's or
        group's step, the same job again later (what runs after it waits for that one)."""
        if call.setup.extra.get(WORKFLOW):
            raise RetryLater(reason, delay)
        self._queue_attempt(call, call.attempt + 1, delay)

    def _queue_attempt(self, call: TaskCall, attempt: int, delay: float) -> None:
        call.setup.attempt = attempt
        call.handle = _submit(self, call, job_settings().worker_servers, delay)


def _after(delay: float) -> float | None:
    """Epoch seconds ``delay`` from now; None (no delay at all) for 0."""
    return time.time() + delay if delay > 0 else None


def _submit(
    task: Task, call: TaskCall, servers: tuple[str, ...], delay: float | None = None
) -> JobHandle:
    """Queue ``call`` of ``task`` as a background job (a mule's or farm's for the MULE
    executor).

    A retry goes to the worker's servers, always: running it inline would skip its delay.
    """
    at = call.at if delay is None else _after(delay)  # a retry waits its delay, not ``at``
    setup = call.setup.to_wire()
    name = task.name
    if task.executor is TaskExecutor.MULE:
        where = call.setup
        name = farm_function(where.farm) if where.farm else mule_function(where.mule)
        setup["task"] = task.name
    job = Job(
        name,
        call.args,
        call.kwargs,
        priority=None if at is not None else call.setup.priority,
        at=at,
        setup=setup,
    )
    return submit_background(job, servers)


@overload
def task(
    function: Callable[..., Any], /, *, executor: TaskExecutor = ..., **setup: Any
) -> Task: ...
@overload
def task(
    function: None = None, /, *, executor: TaskExecutor = ..., **setup: Any
) -> Callable[[Callable[..., Any]], Task]: ...


def task(
    function: Callable[..., Any] | None = None,
    /,
    *,
    executor: TaskExecutor = TaskExecutor.AUTO,
    **setup: Any,
) -> Task | Callable[[Callable[..., Any]], Task]:
    """``@task`` or ``@task(executor=..., retry_count=..., at=..., queue=..., name=...)``."""
    if function is not None:
        return Task(function, executor, setup)
    return lambda f: Task(f, executor, setup)
