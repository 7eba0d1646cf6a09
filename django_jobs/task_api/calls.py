"""One call of a ``@task``: its arguments and setup (``call_setup.py``), and the context that
makes it ``get_current_task()`` while it runs."""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
from collections.abc import Iterator
from typing import Any, Protocol

from broker.errors import BrokerError
from broker.gearman.client import JobHandle
from broker.gearman.steps import working_directory
from django_jobs.sending.client import epoch
from django_jobs.sending.submission import cancel
from django_jobs.task_api.call_setup import CallSetup, When, seconds


class Enqueuer(Protocol):
    """What a call needs of its task (``Task`` of ``django_jobs.tasks``): its name, and queuing
    a call of it. A protocol, so that calls do not import the task API built on them."""

    @property
    def name(self) -> str: ...

    def enqueue(self, call: TaskCall) -> TaskCall: ...


class RetryTaskException(BrokerError):
    """Raised by a task to run again later: ``count`` sets the retry budget (retries after
    the first run), ``timeout`` the delay before this retry (seconds or a timedelta)."""

    def __init__(
        self, count: int | None = None, timeout: float | dt.timedelta | None = None
    ) -> None:
        super().__init__(f"retry requested (count={count}, timeout={timeout})")
        self.count = count
        self.timeout = timeout


_current: contextvars.ContextVar[TaskCall] = contextvars.ContextVar("django_jobs_task")


def get_current_task() -> TaskCall | None:
    """The call being run, from anywhere inside it (None outside a task)."""
    return _current.get(None)


class TaskCall:
    """One call of a task: what calling a task returns and ``get_current_task()`` gives."""

    def __init__(
        self, task: Enqueuer, args: list[Any], kwargs: dict[str, Any], setup: CallSetup
    ) -> None:
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self.setup = setup
        """This call's own setup (``call_setup.py``)."""
        self.handle: JobHandle | None = None
        """The broker's handle once queued; None for an inline run."""
        self.result: Any = None
        """The function's return value, after an inline run."""

    def __repr__(self) -> str:
        return f"<TaskCall {self.task.name} attempt {self.attempt} handle {self.handle}>"

    def cancel(self) -> bool:
        """Cancel this queued call, or stop it while it runs (a worker stops it at its
        next progress report or ``current_job().check_cancelled()``); it is not retried.
        False when the broker no longer has it (it ended)."""
        if self.handle is None:
            raise ValueError(f"{self!r} was not queued: nothing to cancel")
        return cancel(self.handle)

    @property
    def attempt(self) -> int:
        """1 on the first run, 2 on the first retry, ..."""
        return self.setup.attempt

    @property
    def buffer(self) -> dict[str, Any]:
        """A dict that travels with the task through retries and re-enqueues."""
        return self.setup.buffer

    @property
    def retry_count(self) -> int:
        return self.setup.retry_count

    @retry_count.setter
    def retry_count(self, value: int) -> None:
        self.setup.retry_count = int(value)

    @property
    def retry_timeout(self) -> float:
        return self.setup.retry_timeout

    @retry_timeout.setter
    def retry_timeout(self, value: float | dt.timedelta) -> None:
        self.setup.retry_timeout = seconds(value)

    @property
    def at(self) -> float | None:
        """When this call may run (epoch seconds), None for as soon as possible."""
        value = self.setup.at
        return None if value is None else epoch(value)

    @at.setter
    def at(self, value: When | None) -> None:
        self.setup.at = value

    def add_setup(self, **setup: Any) -> None:
        self.setup = self.setup.updated(setup)

    def __call__(self, *args: Any, **kwargs: Any) -> TaskCall:
        """Queue the same task again with new arguments, this call's setup and buffer."""
        again = TaskCall(self.task, list(args), kwargs, self.setup.copy(attempt=1))
        return self.task.enqueue(again)


@contextlib.contextmanager
def running(call: TaskCall) -> Iterator[None]:
    """``call`` is ``get_current_task()`` while it runs, in its ``working_dir`` if it has one."""
    token = _current.set(call)
    try:
        with working_directory(call.setup.working_dir or None):
            yield
    finally:
        _current.reset(token)
