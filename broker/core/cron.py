"""Cron expressions for SUBMIT_JOB_SCHED: minute, hour, day of month, month, day of week.

Each field accepts ``*``, ``N``, ``A-B``, ``*/S``, ``A-B/S`` and comma lists; an
empty field (what Gearman clients send for "any") means ``*``. As in cron, when
both day fields are restricted a day matching either one fires. Day of week runs
0-6 from Sunday (7 is also Sunday). Times are local, as cron's are.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from broker.errors import ProtocolError

_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
# Searching further than this for a matching day means the expression never fires.
_MAX_DAYS_AHEAD = 366 * 5


def _parse_field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in (text or "*").split(","):
        span, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if span == "*":
                start, end = low, high
            elif "-" in span:
                first, last = span.split("-", 1)
                start, end = int(first), int(last)
            else:
                start = end = int(span)
        except ValueError:
            raise ProtocolError(
                f"bad cron {name} field {text!r}", code=b"INVALID_ARGUMENTS", close=False
            ) from None
        if step < 1 or start < low or end > high or start > end:
            raise ProtocolError(
                f"cron {name} field {text!r} is out of range {low}-{high}",
                code=b"INVALID_ARGUMENTS",
                close=False,
            )
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True, slots=True)
class CronSpec:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool
    text: str

    @classmethod
    def parse(cls, fields: list[str]) -> CronSpec:
        if len(fields) != 5:
            raise ProtocolError(
                "a cron schedule has five fields", code=b"INVALID_ARGUMENTS", close=False
            )
        parsed = [_parse_field(text, *spec) for text, spec in zip(fields, _FIELDS, strict=True)]
        weekdays = frozenset(7 if d == 0 else d for d in parsed[4]) | parsed[4]
        return cls(
            parsed[0],
            parsed[1],
            parsed[2],
            parsed[3],
            weekdays,
            days_restricted=fields[2] not in ("", "*"),
            weekdays_restricted=fields[4] not in ("", "*"),
            text=" ".join(f or "*" for f in fields),
        )

    def _day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = day.isoweekday() in self.weekdays  # isoweekday: Monday 1 .. Sunday 7
        if self.days_restricted and self.weekdays_restricted:
            return in_month or in_week
        return in_month and in_week

    def next_after(self, after: float) -> float:
        """The first matching minute strictly after the timestamp ``after``."""
        start = dt.datetime.fromtimestamp(after).replace(second=0, microsecond=0)
        start += dt.timedelta(minutes=1)
        day = start.date()
        for _ in range(_MAX_DAYS_AHEAD):
            if self._day_matches(day):
                first = start.time() if day == start.date() else dt.time(0, 0)
                for hour in sorted(h for h in self.hours if h >= first.hour):
                    for minute in sorted(self.minutes):
                        if hour == first.hour and minute < first.minute:
                            continue
                        return dt.datetime.combine(day, dt.time(hour, minute)).timestamp()
            day += dt.timedelta(days=1)
        raise ProtocolError(
            f"cron schedule {self.text!r} never fires", code=b"INVALID_ARGUMENTS", close=False
        )
