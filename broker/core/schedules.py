"""Recurring jobs: SUBMIT_JOB_SCHED cron schedules and spoolgear's ``@every`` timers.

A SUBMIT_JOB_SCHED packet carries five cron fields (``cron.py``). As an
extension, a minute field of ``@every SECONDS`` (optionally ``@every SECONDS xN``
for N firings, then the schedule ends) with the other four fields empty makes a
fixed-interval timer, what uWSGI's ``add_timer``/``add_rb_timer`` give. Both
kinds are stored with their next run and firing count, so a restart resumes them
(see ``Broker.restore`` for the missed-firing policy).
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.core.cron import CronSpec
from broker.errors import ProtocolError

EVERY = "@every"
# Timers fire at most once a second, as uWSGI's timers do.
MIN_INTERVAL_SECONDS = 1
# A larger interval or count is refused (a 32-bit count, as uWSGI keeps them).
MAX_TIMER_COUNT = 2**31 - 1


def _invalid(message: str) -> ProtocolError:
    return ProtocolError(message, code=b"INVALID_ARGUMENTS", close=False)


@dataclass(frozen=True, slots=True)
class IntervalSpec:
    """Every ``seconds`` seconds, ``iterations`` times (None: until cancelled)."""

    seconds: int
    iterations: int | None
    text: str

    @classmethod
    def parse(cls, text: str) -> IntervalSpec:
        words = text.split()
        try:
            if words[0] != EVERY or len(words) not in (2, 3):
                raise ValueError
            seconds = int(words[1])
            iterations = int(words[2].removeprefix("x")) if len(words) == 3 else None
        except (ValueError, IndexError):
            raise _invalid(
                f"bad timer {text[:60]!r}: expected '@every SECONDS' or "
                "'@every SECONDS xITERATIONS'"
            ) from None
        if not (MIN_INTERVAL_SECONDS <= seconds <= MAX_TIMER_COUNT) or (
            iterations is not None and not 1 <= iterations <= MAX_TIMER_COUNT
        ):
            raise _invalid(
                f"timer {text[:60]!r}: seconds must be {MIN_INTERVAL_SECONDS} to "
                f"{MAX_TIMER_COUNT} and iterations 1 to {MAX_TIMER_COUNT}"
            )
        return cls(seconds, iterations, " ".join(words))

    def next_after(self, after: float) -> float:
        return after + self.seconds


Spec = CronSpec | IntervalSpec


def parse_fields(fields: list[str]) -> Spec:
    """The five SUBMIT_JOB_SCHED fields as a cron expression or an ``@every`` timer."""
    if fields and fields[0].startswith(EVERY):
        if any(field not in ("", "*") for field in fields[1:]):
            raise _invalid("an @every timer leaves the hour, day, month and weekday fields empty")
        return IntervalSpec.parse(fields[0])
    return CronSpec.parse(fields)


def parse_stored(text: str) -> Spec:
    """A spec as stored (its ``text``)."""
    return IntervalSpec.parse(text) if text.startswith(EVERY) else CronSpec.parse(text.split(" "))


def iterations(spec: Spec) -> int | None:
    """How many firings the schedule has in all (cron schedules never end)."""
    return spec.iterations if isinstance(spec, IntervalSpec) else None


@dataclass(slots=True, eq=False)
class Schedule:
    """A recurring job: each time ``spec`` comes due a background job is created
    (coalescing on the unique, so a run still queued or running absorbs the next
    one). A replaced or cancelled schedule is marked ``cancelled`` and its pending
    timeline entry does nothing."""

    handle: bytes
    function: bytes
    unique: bytes
    data: bytes
    spec: Spec
    next_run: float
    fired: int = 0
    cancelled: bool = False
