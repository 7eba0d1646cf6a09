"""Flow control: rate limits, limits on running jobs, and paused queues, held by the broker
for every worker at once.

An operator's rule names functions by pattern (``mail.*``) and limits them together: at
most ``rate`` job starts per period (a bucket that holds one period's starts, refilled
continuously), at most ``running`` jobs running, at most ``per_key`` running with one
concurrency key, or none while paused. A grab skips a function that a rule holds back, so
its jobs wait in their order while the worker takes other work, and within a function
passes over jobs whose key is at its limit (``functions.py``); the rule wakes the sleeping
workers once it lets a job through again. Rules are kept in the store: a restart keeps
them. A function with no rule pays one empty-tuple test per grab.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from fnmatch import fnmatchcase

from broker.core.journal import Journal
from broker.core.model import CallLater, Function, Gate, Job
from broker.store.operations import FlowRule

RATE_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(text: str) -> tuple[int, float]:
    """``100/s``, ``5/m``, ``1000/h`` to (starts, seconds); ``ValueError`` says why not."""
    count, slash, period = text.strip().partition("/")
    if not slash or not count.isdigit() or int(count) < 1 or period not in RATE_PERIODS:
        raise ValueError(f"{text!r} is not a rate: N/s, N/m or N/h with N from 1, e.g. 100/s")
    return int(count), RATE_PERIODS[period]


def rate_text(rule: FlowRule) -> str:
    unit = next(unit for unit, seconds in RATE_PERIODS.items() if seconds == rule.per)
    return f"{rule.rate}/{unit}"


class FlowControl:
    """The rules in force, by pattern, and the gates they put on functions."""

    def __init__(
        self,
        functions: dict[bytes, Function],
        *,
        journal: Journal,
        clock: Callable[[], float],
        call_later: CallLater,
        wake: Callable[[Function], None],
    ) -> None:
        self.functions = functions
        self.journal = journal
        self.clock = clock
        self.call_later = call_later
        self.wake = wake
        self.gates: dict[bytes, Gate] = {}

    def rules(self) -> list[FlowRule]:
        return [gate.rule for _, gate in sorted(self.gates.items())]

    def rule(self, pattern: bytes) -> FlowRule:
        gate = self.gates.get(pattern)
        return FlowRule(pattern) if gate is None else gate.rule

    def put(self, rule: FlowRule, *, stored: bool = True) -> None:
        """Set the rule of ``rule.pattern`` (dropping it when it limits nothing), and
        keep it in the store unless it came from there."""
        old = self.gates.pop(rule.pattern, None)
        if old is not None and old.timer is not None:
            old.timer.cancel()
        if not rule.idle:
            gate = Gate(rule, self.clock())
            if old is not None:
                gate.keys = old.keys  # the running jobs still count
                if old.rule.rate == rule.rate and old.rule.per == rule.per:
                    gate.tokens, gate.refilled = old.tokens, old.refilled  # no fresh burst
            self.gates[rule.pattern] = gate
        if stored:
            self.journal.flow_rule_changed(rule)
        for function in self.functions.values():
            if fnmatchcase(function.name, rule.pattern):
                self.attach(function)
                self.wake(function)  # it may run now: its workers look again

    def attach(self, function: Function) -> None:
        """Give ``function`` the gates of every rule naming it (a new function, or the
        rules changed)."""
        for gate in function.gates:
            gate.members.remove(function)
        gates = [
            gate for gate in self.gates.values() if fnmatchcase(function.name, gate.rule.pattern)
        ]
        for gate in gates:
            gate.members.append(function)
        function.gates = tuple(gates)

    def forget(self, function: Function) -> None:
        for gate in function.gates:
            gate.members.remove(function)
        function.gates = ()

    def may_start(self, function: Function) -> bool:
        """Whether every rule on ``function`` lets one more job start now; one that does
        not remembers to wake the workers when it does."""
        now = self.clock()
        for gate in function.gates:
            wait = self._wait(gate, now)
            if wait:
                gate.blocked = True
                if wait < math.inf and gate.timer is None:
                    gate.timer = self.call_later(wait, functools.partial(self._refilled, gate))
                return False
        return True

    def key_allows(self, function: Function, key: bytes) -> bool:
        """Whether a job with concurrency ``key`` may start (a job without one may)."""
        if key:
            for gate in function.gates:
                if gate.rule.per_key and gate.keys.get(key, 0) >= gate.rule.per_key:
                    return False
        return True

    def keyed(self, function: Function) -> bool:
        """A rule on ``function`` limits per key: a grab looks past held-back jobs."""
        return any(gate.rule.per_key for gate in function.gates)

    def held_by_keys(self, function: Function) -> None:
        """Every job a grab looked at had a key at its limit: wake the workers when one
        of those ends."""
        for gate in function.gates:
            if gate.rule.per_key:
                gate.blocked = True

    def started(self, job: Job) -> None:
        for gate in job.function.gates:
            if gate.rule.rate:
                gate.tokens -= 1
            if job.key:  # counted under every rule, so a per-key limit set later sees it
                gate.keys[job.key] = gate.keys.get(job.key, 0) + 1

    def ended(self, job: Job) -> None:
        """A job stopped running: a rule on running jobs may open."""
        for gate in job.function.gates:
            rule = gate.rule
            if job.key in gate.keys:
                left = gate.keys[job.key] - 1
                if left:
                    gate.keys[job.key] = left
                else:
                    del gate.keys[job.key]
            if gate.blocked and (rule.per_key or (rule.running and gate.running() < rule.running)):
                self._opened(gate)

    def _wait(self, gate: Gate, now: float) -> float:
        """0 when the gate lets a job start now; else seconds until it may (``inf``: until
        something else happens: a resume, a running job's end)."""
        rule = gate.rule
        if rule.paused or (rule.running and gate.running() >= rule.running):
            return math.inf
        if not rule.rate:
            return 0.0
        gate.tokens = min(
            float(rule.rate), gate.tokens + (now - gate.refilled) * rule.rate / rule.per
        )
        gate.refilled = now
        if gate.tokens >= 1:
            return 0.0
        return (1 - gate.tokens) * rule.per / rule.rate

    def _refilled(self, gate: Gate) -> None:
        gate.timer = None
        self._opened(gate)

    def _opened(self, gate: Gate) -> None:
        gate.blocked = False
        for function in gate.members:
            self.wake(function)
