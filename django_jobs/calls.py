"""One call of a ``@task``: its setup (retry policy, ``at``, buffer), the retry arithmetic,
and the context that makes it ``get_current_task()`` while it runs."""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import os
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from broker.client import JobHandle
from broker.errors import BrokerError
from django_jobs.client import epoch, job_priority

if TYPE_CHECKING:
    from django_jobs.tasks import Task

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


class RetryTaskException(BrokerError):
    """Raised by a task to run again later: ``count`` sets the retry budget (retries after
    the first run), ``timeout`` the delay before this retry (seconds or a timedelta)."""

    def __init__(
        self, count: int | None = None, timeout: float | dt.timedelta | None = None
    ) -> None:
        super().__init__(f"retry requested (count={count}, timeout={timeout})")
        self.count = count
        self.timeout = timeout


def seconds(value: float | dt.timedelta) -> float:
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
        self.setup["retry_timeout"] = seconds(value)

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


@contextlib.contextmanager
def running(call: TaskCall) -> Iterator[None]:
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
