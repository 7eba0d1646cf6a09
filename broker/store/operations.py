"""What a store holds (records) and what the broker asks it to change (operations).

A batch handed to ``Store.write`` is a sequence of these operations, in the
order the broker made the changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class StoredJob(NamedTuple):
    number: int
    function: bytes
    unique: bytes
    data: bytes
    priority: int
    run_at: float
    """Epoch seconds before which the job must not run; 0 = at once."""
    reducer: bytes
    attempts: int
    running: bool
    seq: int
    """Position in its queue: jobs are served in (priority, seq) order."""
    key: bytes = b""
    """Its concurrency key (SUBMIT_JOB_KEYED): a flow rule's ``per_key`` limits how many
    jobs with one key run at once; empty for none."""
    after: bytes = b""
    """The jobs it runs after (SUBMIT_JOB_AFTER): ``chain`` or ``group`` and their numbers,
    space-separated; with ``run_at`` ``WAITING`` it still waits for some of them."""


WAITING = -1.0
"""A stored job's ``run_at`` while it waits for the jobs it runs after."""


class StoredSchedule(NamedTuple):
    number: int
    function: bytes
    unique: bytes
    data: bytes
    spec: str
    """Five cron fields separated by spaces, or an ``@every`` timer."""
    next_run: float
    """Epoch seconds; 0 when unknown (the next match after start-up is used)."""
    fired: int


class FailedJob(NamedTuple):
    number: int
    function: bytes
    unique: bytes
    data: bytes
    priority: int
    attempts: int
    error: str
    failed_at: float


class KeptResult(NamedTuple):
    """How a background job ended, kept for ``--keep-results`` after it did."""

    number: int
    function: bytes
    status: str
    """``successful``, ``failed`` or ``cancelled``."""
    enqueued_at: float
    """Epoch seconds; 0 when unknown (a job read back from the store after a restart)."""
    started_at: float
    """When its first attempt started; 0 if it never ran."""
    last_started_at: float
    finished_at: float
    workers: tuple[str, ...]
    """The client id (or address) of the worker of each attempt, in order."""
    errors: tuple[str, ...]
    """The reason each failed attempt gave, in order."""
    value: bytes
    """WORK_COMPLETE's data; empty when it was larger than ``--max-result-bytes``."""
    value_size: int
    """The size WORK_COMPLETE's data had (more than ``len(value)`` when it was not kept)."""
    data: bytes
    """The job's payload (what it was asked to do); empty when larger than
    ``--max-result-bytes``."""
    data_size: int


class FlowRule(NamedTuple):
    """What an operator limits for the functions a pattern names (``fnmatch``: an exact
    name, or ``mail.*``): 0 is no limit."""

    pattern: bytes
    rate: int = 0
    """At most this many job starts per ``per`` seconds, across every worker."""
    per: float = 1.0
    running: int = 0
    """At most this many running at once."""
    paused: bool = False
    """No job starts until resumed; submissions are still taken."""
    per_key: int = 0
    """At most this many running at once with one concurrency key (the job's ``key``)."""

    @property
    def idle(self) -> bool:
        """Limits nothing: the rule can go."""
        return not (self.rate or self.running or self.paused or self.per_key)


# The operations a batch is made of, one class each.
class AddJob(NamedTuple):
    job: StoredJob


class MarkRunning(NamedTuple):
    """Assigned to a worker (its attempts so far are already stored)."""

    number: int


class Requeue(NamedTuple):
    """Back to the tail of its queue (``seq``), not running: runnable at once, or at
    ``run_at`` (epoch seconds) when a worker asked to retry it later."""

    number: int
    attempts: int
    seq: int
    run_at: float = 0.0


class DeleteJob(NamedTuple):
    number: int


class FailJob(NamedTuple):
    """Move a job to the failed list (deleting it from the queue)."""

    failed: FailedJob


class DeleteFailed(NamedTuple):
    number: int


class AddSchedule(NamedTuple):
    schedule: StoredSchedule


class DeleteSchedule(NamedTuple):
    number: int


class KeepResult(NamedTuple):
    result: KeptResult


class SetFlowRule(NamedTuple):
    rule: FlowRule


class DeleteFlowRule(NamedTuple):
    pattern: bytes


class DropResults(NamedTuple):
    """Forget these kept results (the oldest, past ``--max-kept-results``)."""

    numbers: tuple[int, ...]


class ExpireResults(NamedTuple):
    """Forget every kept result that ended at or before ``before`` (``--keep-results``),
    whichever broker or earlier run of this one kept it."""

    before: float


class ReserveHandles(NamedTuple):
    """Handle numbers below ``upto`` may be in use; the next start begins there."""

    upto: int


Operation = (
    AddJob
    | MarkRunning
    | Requeue
    | DeleteJob
    | FailJob
    | DeleteFailed
    | AddSchedule
    | DeleteSchedule
    | KeepResult
    | DropResults
    | ExpireResults
    | ReserveHandles
    | SetFlowRule
    | DeleteFlowRule
)


def compact(batch: Sequence[Operation]) -> list[Operation]:
    """Drop the operations of a batch that later ones in the same batch make moot.

    A job marked running and then deleted, failed or requeued needs only the last
    write; a job added and deleted within one batch needs none. Under load one
    batch covers many short jobs, so this removes most of the writes of a busy
    drain without changing what ``load()`` would return.
    """
    keep = [True] * len(batch)
    earlier: dict[int, list[int]] = {}  # job number -> indices of its ops so far
    for index, op in enumerate(batch):
        if isinstance(op, AddJob):
            earlier[op.job.number] = [index]
        elif isinstance(op, MarkRunning):
            earlier.setdefault(op.number, []).append(index)
        elif isinstance(op, Requeue | DeleteJob | FailJob):
            number = op.failed.number if isinstance(op, FailJob) else op.number
            previous = earlier.pop(number, [])
            added = bool(previous) and isinstance(batch[previous[0]], AddJob)
            if isinstance(op, Requeue) and added:
                earlier[number] = [previous[0], index]  # keep the add, merge the rest
                previous = previous[1:]
            elif isinstance(op, Requeue):
                earlier[number] = [index]
            for dropped in previous:
                keep[dropped] = False
            if isinstance(op, DeleteJob) and added:
                keep[index] = False
    return [op for op, kept in zip(batch, keep, strict=True) if kept]
