"""A task call's setup, typed: retry policy, timing, routing and the buffer.

Declared with ``@task(...)``, changed with ``add_setup`` or a ``TaskCall``'s
properties, and carried in each job's payload (``"setup"``), so a retry or a
re-enqueue knows its attempt, its budget, its ``at`` and its buffer. Keys this
module does not know travel unchanged in ``extra`` (a worker of another version
may know them); the uWSGI keys that cannot mean anything here are refused.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from broker.gearman.retries import backoff_delay
from django_jobs.sending.client import job_priority

# uwsgi_tasks setup keys about uWSGI's spool files, which a task here does not have.
REFUSED_SETUP = {
    "spooler": "a task goes to the workers serving its name; pick them with queue=... "
    "and gearman_worker -q",
    "message_dict": "a task's arguments travel as JSON; pass them as arguments",
}
_NUMBERS = ("retry_count", "retry_timeout", "retry_backoff", "retry_jitter")

When = float | dt.datetime | dt.timedelta


def check_setup(values: Mapping[str, Any]) -> None:
    """Refuse, when decorating or changing it, a setup the broker could not honour."""
    for key, why in REFUSED_SETUP.items():
        if key in values:
            raise ValueError(f"setup key {key!r} is uWSGI's and has no meaning here: {why}")
    job_priority(values.get("priority"))
    for key in _NUMBERS:
        value = values.get(key, 0)
        if not isinstance(value, int | float | dt.timedelta) or isinstance(value, bool):
            raise ValueError(f"setup key {key!r} must be a number, got {value!r}")


def seconds(value: float | dt.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


@dataclass
class CallSetup:
    retry_count: int = 0
    """Retries after the first run."""
    retry_timeout: float = 0.0
    """Seconds before the first retry."""
    retry_backoff: float = 1.0
    """Each further retry waits this many times longer."""
    retry_jitter: float = 0.0
    """+- this fraction of the delay, at random."""
    spooler_return: bool = False
    """The function returns SPOOL_OK / SPOOL_RETRY / SPOOL_IGNORE."""
    working_dir: str | None = None
    priority: str | int | None = None
    """"high", "normal", "low" or digits (run as high); a delayed job runs as normal."""
    queue: str | None = None
    mule: int | None = None
    """MULE executor: this mule's id (None: the first free mule)."""
    farm: str | None = None
    """MULE executor: this farm instead of a mule."""
    at: When | None = None
    """When the call may run: epoch seconds, a datetime, or a delay from now."""
    attempt: int = 1
    """1 on the first run, 2 on the first retry, ..."""
    buffer: dict[str, Any] = field(default_factory=dict)
    """Travels with the task through retries and re-enqueues."""
    task: str | None = None
    """The task a mule or farm message is for."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Setup keys not known here, kept as given."""

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> CallSetup:
        """A setup from ``@task`` keywords or a payload; ``ValueError`` for one the
        broker could not honour."""
        check_setup(values)
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        setup = cls(**{key: value for key, value in values.items() if key in known})
        setup.extra = {key: value for key, value in values.items() if key not in known}
        setup.retry_count = int(setup.retry_count)
        setup.retry_timeout = seconds(setup.retry_timeout)
        setup.retry_backoff = float(setup.retry_backoff)
        setup.retry_jitter = float(setup.retry_jitter)
        return setup

    def copy(self, **changes: Any) -> CallSetup:
        """A setup of its own for another call (its own buffer and extra keys)."""
        fresh = {"buffer": dict(self.buffer), "extra": dict(self.extra), **changes}
        return dataclasses.replace(self, **fresh)

    def updated(self, values: Mapping[str, Any]) -> CallSetup:
        """This setup with ``values`` applied (checked as ``parse`` does)."""
        return CallSetup.parse({**self.to_wire(), **values})

    def to_wire(self) -> dict[str, Any]:
        """What travels in the payload: the settings that differ from the defaults."""
        wire = {**self.extra}
        for name, default in _DEFAULTS.items():
            value = getattr(self, name)
            if value != default:
                wire[name] = value
        return wire

    def retry_delay(self) -> float:
        """Seconds before the next attempt: backed off per attempt, jittered if asked."""
        return backoff_delay(
            self.retry_timeout, self.attempt, factor=self.retry_backoff, jitter=self.retry_jitter
        )


_DEFAULTS = {
    name: value for name, value in dataclasses.asdict(CallSetup()).items() if name != "extra"
}
