"""Recurring jobs: SUBMIT_JOB_SCHED cron schedules and spoolgear's ``@every`` timers.

A SUBMIT_JOB_SCHED packet carries five cron fields (``cron.py``). As an
extension, a minute field of ``@every SECONDS`` (optionally ``@every SECONDS xN``
for N firings, then the schedule ends) with the other four fields empty makes a
fixed-interval timer, what uWSGI's ``add_timer``/``add_rb_timer`` give. Both
kinds are stored with their next run and firing count, so a restart resumes them
(see ``restore.py`` for the missed-firing policy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from broker.core.cron import CronSpec
from broker.core.handles import Handles, handle_number
from broker.core.journal import Journal
from broker.core.model import CallLater
from broker.core.timeline import Timeline
from broker.errors import ProtocolError
from broker.store.operations import StoredSchedule

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


class Scheduler:
    """The schedules, each on the timeline until its next run.

    Each firing hands the schedule to ``fire``, which creates its job; the next run
    (or the schedule's end) is journaled in the same batch, so a crash can neither
    repeat nor lose a firing.
    """

    def __init__(
        self,
        *,
        journal: Journal,
        handles: Handles,
        call_later: CallLater,
        clock: Callable[[], float],
        fire: Callable[[Schedule], None],
    ) -> None:
        self.journal = journal
        self.handles = handles
        self.clock = clock
        self.fire = fire
        self.schedules: dict[bytes, Schedule] = {}
        self.firings = 0
        """Runs started by all schedules since start-up."""
        self.timeline: Timeline[Schedule] = Timeline(call_later, clock, self._due)

    def put(self, name: bytes, unique: bytes, fields: list[str], data: bytes) -> bytes:
        """Add a schedule and return its handle. One with the same function and non-empty
        unique is the same schedule: the same spec and data keep it, others replace it.
        Raises ``ProtocolError`` for a spec that is refused (then nothing changed)."""
        spec = parse_fields(fields)
        existing = next(
            (
                s
                for s in self.schedules.values()
                if unique and (s.function, s.unique) == (name, unique)
            ),
            None,
        )
        if existing is not None and (existing.spec.text, existing.data) == (spec.text, data):
            return existing.handle
        next_run = spec.next_after(self.clock())
        handle = self.handles.new() if existing is None else existing.handle
        if existing is not None:
            existing.cancelled = True
        schedule = Schedule(handle, name, unique, data, spec, next_run)
        self.add(schedule)
        self._store(schedule)
        return handle

    def add(self, schedule: Schedule) -> None:
        """Put a schedule on the timeline (a new one, or one restored from the store)."""
        self.schedules[schedule.handle] = schedule
        self.timeline.add(schedule.next_run, schedule)

    def cancel(self, handle: bytes) -> bool:
        schedule = self.schedules.pop(handle, None)
        if schedule is None:
            return False
        schedule.cancelled = True
        self.journal.schedule_removed(handle)
        return True

    def functions(self) -> set[bytes]:
        """Functions that schedules will submit jobs for."""
        return {s.function for s in self.schedules.values()}

    def _store(self, schedule: Schedule) -> None:
        self.journal.schedule_added(
            StoredSchedule(
                handle_number(schedule.handle),
                schedule.function,
                schedule.unique,
                schedule.data,
                schedule.spec.text,
                schedule.next_run,
                schedule.fired,
            )
        )

    def _due(self, schedule: Schedule, now: float) -> None:
        if schedule.cancelled:
            return
        self.fire(schedule)
        schedule.fired += 1
        self.firings += 1
        if schedule.fired == iterations(schedule.spec):
            self.cancel(schedule.handle)
            return
        schedule.next_run = schedule.spec.next_after(now)
        self._store(schedule)
        self.timeline.add(schedule.next_run, schedule)
