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

import contextlib
import contextvars
import datetime as dt
import enum
import functools
import logging
import os
import random
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any, overload

from django.conf import settings

from broker.client import JobHandle
from broker.errors import BrokerError, ConnectionFailed, ServerError, WorkFailed
from broker.uwsgidecorators import SPOOL_IGNORE, SPOOL_OK, SPOOL_RETRY
from django_jobs.client import GearmanClient, Job, epoch, job_priority
from django_jobs.conf import farm_function, job_settings, mule_function
from django_jobs.discovery import check_served
from django_jobs.registry import register
from django_jobs.serialization import Call

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

# Setup keys with a meaning here; any other key is kept and travels with the task.
DEFAULT_SETUP: dict[str, Any] = {
    "retry_count": 0,  # retries after the first run
    "retry_timeout": 0.0,  # seconds before the first retry
    "retry_backoff": 1.0,  # each further retry waits this many times longer
    "retry_jitter": 0.0,  # +- this fraction of the delay, at random
    "spooler_return": False,  # the function returns SPOOL_OK / SPOOL_RETRY / SPOOL_IGNORE
    "working_dir": None,
    "priority": None,  # "high", "normal", "low" or digits (run as high); delayed: normal
    "queue": None,
    "mule": None,  # MULE executor: this mule's id (None: the first free mule)
    "farm": None,  # MULE executor: this farm instead of a mule
}


# uwsgi_tasks setup keys about uWSGI's spool files, which a task here does not have.
REFUSED_SETUP = {
    "spooler": "a task goes to the workers serving its name; pick them with queue=... "
    "and gearman_worker -q",
    "message_dict": "a task's arguments travel as JSON; pass them as arguments",
}


def check_setup(setup: dict[str, Any]) -> None:
    """Refuse, when decorating or changing it, a setup the broker could not honour."""
    for key, why in REFUSED_SETUP.items():
        if key in setup:
            raise ValueError(f"setup key {key!r} is uWSGI's and has no meaning here: {why}")
    job_priority(setup.get("priority"))
    for key in ("retry_count", "retry_timeout", "retry_backoff", "retry_jitter"):
        value = setup.get(key, 0)
        if not isinstance(value, int | float | dt.timedelta) or isinstance(value, bool):
            raise ValueError(f"setup key {key!r} must be a number, got {value!r}")


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


class RetryTaskException(BrokerError):
    """Raised by a task to run again later: ``count`` sets the retry budget (retries after
    the first run), ``timeout`` the delay before this retry (seconds or a timedelta)."""

    def __init__(
        self, count: int | None = None, timeout: float | dt.timedelta | None = None
    ) -> None:
        super().__init__(f"retry requested (count={count}, timeout={timeout})")
        self.count = count
        self.timeout = timeout


class QueueFull(BrokerError):
    """The broker refused a mule/farm message: the consumers are that far behind."""


class NoConsumer(BrokerError):
    """The broker refused a mule/farm message: no member has served it for a while (its
    ``--transient-grace``), so the message could never be delivered (uWSGI raises too)."""


def _seconds(value: float | dt.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


_current: contextvars.ContextVar[TaskCall] = contextvars.ContextVar("django_jobs_task")


def get_current_task() -> TaskCall | None:
    """The call being run, from anywhere inside it (None outside a task)."""
    return _current.get(None)


class TaskCall:
    """One call of a task: what calling a task returns and ``get_current_task()`` gives."""

    def __init__(
        self, task: Task, args: list[Any], kwargs: dict[str, Any], setup: dict[str, Any]
    ) -> None:
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self.setup = {**DEFAULT_SETUP, "attempt": 1, "buffer": {}, **setup}
        self.handle: JobHandle | None = None
        """The broker's handle once queued; None for an inline run."""
        self.result: Any = None
        """The function's return value, after an inline run."""

    def __repr__(self) -> str:
        return f"<TaskCall {self.task.name} attempt {self.attempt} handle {self.handle}>"

    @property
    def attempt(self) -> int:
        """1 on the first run, 2 on the first retry, ..."""
        return int(self.setup["attempt"])

    @property
    def buffer(self) -> dict[str, Any]:
        """A dict that travels with the task through retries and re-enqueues."""
        buffer: dict[str, Any] = self.setup["buffer"]
        return buffer

    @property
    def retry_count(self) -> int:
        return int(self.setup["retry_count"])

    @retry_count.setter
    def retry_count(self, value: int) -> None:
        self.setup["retry_count"] = int(value)

    @property
    def retry_timeout(self) -> float:
        return float(self.setup["retry_timeout"])

    @retry_timeout.setter
    def retry_timeout(self, value: float | dt.timedelta) -> None:
        self.setup["retry_timeout"] = _seconds(value)

    @property
    def at(self) -> float | None:
        """When this call may run (epoch seconds), None for as soon as possible."""
        value = self.setup.get("at")
        return None if value is None else epoch(value)

    @at.setter
    def at(self, value: float | dt.datetime | dt.timedelta | None) -> None:
        self.setup["at"] = value

    def add_setup(self, **setup: Any) -> None:
        check_setup(setup)
        self.setup.update(setup)

    def __call__(self, *args: Any, **kwargs: Any) -> TaskCall:
        """Queue the same task again with new arguments, this call's setup and buffer."""
        again = TaskCall(
            self.task, list(args), kwargs, {**self.setup, "attempt": 1, "buffer": dict(self.buffer)}
        )
        return self.task.enqueue(again)

    def retries_left(self) -> int:
        return self.retry_count - (self.attempt - 1)

    def retry_delay(self) -> float:
        delay = self.retry_timeout * float(self.setup["retry_backoff"]) ** (self.attempt - 1)
        jitter = float(self.setup["retry_jitter"])
        return max(0.0, delay * (1 + random.uniform(-jitter, jitter))) if jitter else delay


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
            check_setup(setup)
        except ValueError as exc:
            raise ValueError(f"@task {function.__qualname__}: {exc}") from None
        self.function = function
        self.executor = executor
        self._registered = register(
            function, setup.get("name"), setup.get("queue"), run=self.run_job
        )
        self.name = self._registered.name
        self.setup = {key: value for key, value in setup.items() if key != "name"}
        if "retry_timeout" in self.setup:
            self.setup["retry_timeout"] = _seconds(self.setup["retry_timeout"])
        functools.update_wrapper(self, function)

    def __call__(self, *args: Any, **kwargs: Any) -> TaskCall:
        return self.delay(*args, **kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> TaskCall:
        """Queue a call (or run it inline, per the executor); returns the ``TaskCall``."""
        return self.enqueue(TaskCall(self, list(args), kwargs, self.setup))

    def apply(self, *args: Any, **kwargs: Any) -> Any:
        """Run now in this process and return the result; exceptions propagate."""
        call = TaskCall(self, list(args), kwargs, self.setup)
        self._run_inline(call)
        return call.result

    def enqueue(self, call: TaskCall) -> TaskCall:
        if self.executor is TaskExecutor.RUNTIME:
            self._run_inline(call)
            return call
        check_served(self._registered)
        try:
            call.handle = _submit(call, job_settings().client_servers)
        except ConnectionFailed:
            if self.executor is TaskExecutor.SPOOLER or not getattr(
                settings, "GEARMAN_TASKS_INLINE_FALLBACK", True
            ):
                raise
            log.warning("no Gearman server answered; running %s inline", self.name)
            self._run_inline(call)
        return call

    def _run_inline(self, call: TaskCall) -> None:
        with _running(call):
            call.result = self.function(*call.args, **call.kwargs)

    def run_job(self, received: Call) -> Any:
        """A worker runs a queued call: apply the return-code and retry policy."""
        call = TaskCall(self, received.args, received.kwargs, received.setup)
        try:
            with _running(call):
                result = self.function(*call.args, **call.kwargs)
        except RetryTaskException as exc:
            if exc.count is not None:  # the whole budget, so raising it again always ends
                call.retry_count = exc.count
            self._retry(
                call, "RetryTaskException", None if exc.timeout is None else _seconds(exc.timeout)
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
        if call.setup["spooler_return"] and result not in (SPOOL_OK, SPOOL_IGNORE):
            raise WorkFailed(
                f"{self.name} has spooler_return=True but returned {result!r}, "
                "not SPOOL_OK, SPOOL_RETRY or SPOOL_IGNORE"
            )
        return result

    def _retry(self, call: TaskCall, reason: str, delay: float | None) -> None:
        """Queue the next attempt, or fail the job (to the failed list) when none is left.

        The next attempt is a new delayed job, queued before this one reports
        success: a crash in between runs the attempt twice, never zero times.
        """
        if call.retries_left() <= 0:
            raise WorkFailed(
                f"{self.name} failed on attempt {call.attempt} of {call.retry_count + 1}: {reason}"
            )
        delay = call.retry_delay() if delay is None else delay
        log.warning(
            "%s attempt %d of %d: %s; again in %.1f s",
            self.name,
            call.attempt,
            call.retry_count + 1,
            reason.strip().splitlines()[-1],
            delay,
        )
        call.setup["attempt"] = call.attempt + 1
        call.handle = _submit(call, job_settings().worker_servers, delay)


@contextlib.contextmanager
def _running(call: TaskCall) -> Iterator[None]:
    token = _current.set(call)
    previous = os.getcwd() if call.setup.get("working_dir") else None
    try:
        if previous is not None:
            os.chdir(call.setup["working_dir"])
        yield
    finally:
        if previous is not None:
            os.chdir(previous)
        _current.reset(token)


_clients = threading.local()


def submit_background(job: Job, servers: tuple[str, ...]) -> JobHandle:
    """Queue ``job`` through this thread's client for ``servers``; a mule or farm queue
    that is full raises ``QueueFull``, one that nobody serves ``NoConsumer``."""
    if not hasattr(_clients, "by_servers"):
        _clients.by_servers = {}
    client: GearmanClient | None = _clients.by_servers.get(servers)
    if client is None:
        client = _clients.by_servers[servers] = GearmanClient(servers)
    try:
        handle: JobHandle = client.submit_jobs([job], background=True)[0]
    except ServerError as exc:
        if exc.code == "QUEUE_ERROR":
            raise QueueFull(
                f"{job.name} refused the job: its queue is full (the broker's "
                "--transient-max-queue or maxqueue); its consumers are behind, "
                "add workers or retry later"
            ) from None
        if exc.code == "NO_WORKERS":
            raise NoConsumer(
                f"{job.name} refused the job: no process serves it (start "
                "`manage.py gearman_worker --farm NAME` or `--mule ID`)"
            ) from None
        raise
    return handle


def _after(delay: float) -> float | None:
    """Epoch seconds ``delay`` from now; None (no delay at all) for 0."""
    return time.time() + delay if delay > 0 else None


def _submit(call: TaskCall, servers: tuple[str, ...], delay: float | None = None) -> JobHandle:
    """Queue ``call`` as a background job (a mule's or farm's for the MULE executor).

    A retry goes to the worker's servers, always: running it inline would skip its delay.
    """
    at = call.at if delay is None else _after(delay)  # a retry waits its delay, not ``at``
    setup = dict(call.setup)
    name = call.task.name
    if call.task.executor is TaskExecutor.MULE:
        name = farm_function(setup["farm"]) if setup["farm"] else mule_function(setup["mule"])
        setup["task"] = call.task.name
    job = Job(
        name,
        call.args,
        call.kwargs,
        priority=None if at is not None else setup.get("priority"),
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
