"""What the broker must make durable, collected per event-loop turn.

The broker records an operation for every change to a background job (created,
assigned, requeued, ended, failed) and to schedules. The server takes the
operations as one batch per turn and commits them off the event loop; a reply
that promises durability is gated on the batch number (``output.py``).

With the memory store nothing is durable: ``NullJournal`` stands in, records
nothing, and its batch number stays 0, which is always committed.
"""

from __future__ import annotations

from broker.core.handles import handle_number
from broker.core.model import Job
from broker.store import operations as ops
from broker.store.base import StoredState


class Journal:
    def __init__(self, next_seq: int = 1) -> None:
        self.ops: list[ops.Operation] = []
        self.building = 1
        """Number of the batch being collected; a gated session waits for it."""
        self.committed = 0
        """Number of the last batch on disk."""
        self._seq = next_seq

    @classmethod
    def resuming(cls, state: StoredState) -> Journal:
        """A journal for a broker restored from ``state``: new records queue after it."""
        return cls(next_seq=state.next_seq)

    def record(self, op: ops.Operation) -> None:
        self.ops.append(op)

    def take(self) -> tuple[int, list[ops.Operation]]:
        """Hand over the current batch and start the next one."""
        number, batch = self.building, self.ops
        self.building += 1
        self.ops = []
        return number, batch

    @property
    def last_seq(self) -> int:
        """The queue position given by the latest ``job_added`` or ``job_requeued``."""
        return self._seq - 1

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = seq + 1
        return seq

    def job_added(self, job: Job) -> None:
        stored = ops.StoredJob(
            handle_number(job.handle),
            job.function.name,
            job.unique,
            job.data,
            job.priority,
            ops.WAITING if job.waiting else job.when,
            job.reducer,
            job.retries,
            False,
            self._next_seq(),
            job.key,
            job.after,
        )
        self.record(ops.AddJob(stored))

    def job_running(self, job: Job) -> None:
        self.record(ops.MarkRunning(handle_number(job.handle)))

    def job_requeued(self, job: Job) -> None:
        self.record(ops.Requeue(handle_number(job.handle), job.retries, self._next_seq(), job.when))

    def job_ended(self, job: Job) -> None:
        self.stored_job_ended(handle_number(job.handle))

    def stored_job_ended(self, number: int) -> None:
        self.record(ops.DeleteJob(number))

    def job_failed(self, failed: ops.FailedJob) -> None:
        self.record(ops.FailJob(failed))

    def failed_removed(self, number: int) -> None:
        self.record(ops.DeleteFailed(number))

    def schedule_added(self, schedule: ops.StoredSchedule) -> None:
        self.record(ops.AddSchedule(schedule))

    def schedule_removed(self, handle: bytes) -> None:
        self.record(ops.DeleteSchedule(handle_number(handle)))

    def result_kept(self, result: ops.KeptResult) -> None:
        self.record(ops.KeepResult(result))

    def results_dropped(self, numbers: tuple[int, ...]) -> None:
        self.record(ops.DropResults(numbers))

    def results_expired(self, before: float) -> None:
        self.record(ops.ExpireResults(before))

    def handles_reserved(self, upto: int) -> None:
        self.record(ops.ReserveHandles(upto))

    def flow_rule_changed(self, rule: ops.FlowRule) -> None:
        self.record(ops.DeleteFlowRule(rule.pattern) if rule.idle else ops.SetFlowRule(rule))


class NullJournal(Journal):
    """The memory store's journal: nothing to record, nothing ever waits."""

    def __init__(self) -> None:
        super().__init__()
        self.building = 0

    def record(self, op: ops.Operation) -> None:
        pass

    # The per-job records are built before ``record``: skip building them too.
    def job_added(self, job: Job) -> None:
        pass

    def job_running(self, job: Job) -> None:
        pass

    def job_requeued(self, job: Job) -> None:
        pass

    def job_ended(self, job: Job) -> None:
        pass

    def result_kept(self, result: ops.KeptResult) -> None:
        pass
