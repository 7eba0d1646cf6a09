"""Jobs and schedules other brokers hold, when several brokers share one store
(PostgreSQL). Without a shared store it holds and finds nothing.

A background job with a unique coalesces onto another broker's job with that unique
without a look-up per submission: the store inserts it only if no row of that function
has the unique (a unique index decides, inside the batch's transaction), and the job
waits here, not queued, until its batch is committed. Then it is either queued, or
dropped with its JOB_CREATED replies (still held back, since they are gated on that
batch) rewritten to name the job the store already had. GET_STATUS answers for another
broker's job, and a schedule another broker holds is refused here rather than
duplicated (it would fire twice): one indexed look-up each, asked only when this
broker's memory and its own part of the store have no answer.
"""

from __future__ import annotations

from broker.core.handles import Handles, any_number, handle_number
from broker.core.model import Job, Session
from broker.protocol.packets import PacketType, encode_response
from broker.store.base import SharedStore
from broker.store.operations import KeptResult, StoredJob


class Held:
    """A new job waiting for its batch's commit, and where its JOB_CREATED replies sit
    (session, index in its unsent output). A plain class, not a dataclass: one is made per
    submission, and compiled, its constructor runs natively (a dataclass's generated
    ``__init__`` stays interpreted)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.replies: list[tuple[Session, int]] = []


class OtherBrokers:
    def __init__(self, store: SharedStore | None, handles: Handles) -> None:
        self.store = store
        self.handles = handles
        self._held: dict[int, list[Held]] = {}
        """By batch number: the jobs that wait for that batch's commit."""
        self._by_job: dict[Job, Held] = {}

    def must_hold(self, key: tuple[bytes, ...] | None) -> bool:
        """Whether a new background job with this coalescing key waits for its commit
        (a unique, not the payload-matching "-", which the store does not index)."""
        return self.store is not None and key is not None and len(key) == 2

    def hold(self, job: Job, batch: int) -> None:
        held = Held(job)
        self._held.setdefault(batch, []).append(held)
        self._by_job[job] = held

    def replied(self, job: Job, session: Session | None) -> None:
        """A JOB_CREATED naming ``job`` was just queued for ``session``."""
        held = self._by_job.get(job)
        if held is not None and session is not None and not session.closed:
            held.replies.append((session, len(session.out) - 1))

    def cancel(self, job: Job) -> bool:
        """Forget a held job (admin ``cancel job``); false if it is not held."""
        held = self._by_job.pop(job, None)
        if held is None:
            return False
        for waiting in self._held.values():
            if held in waiting:
                waiting.remove(held)
        return True

    def committed(self, batch: int, coalesced: dict[int, int]) -> tuple[list[Job], list[Job]]:
        """Batch ``batch`` is stored: its held jobs to queue now, and those the store
        already had under their unique (``coalesced``: their number -> the stored job's),
        whose replies now name the stored job."""
        ready, dropped = [], []
        for held in self._held.pop(batch, []):
            del self._by_job[held.job]
            existing = coalesced.get(handle_number(held.job.handle))
            if existing is None:
                ready.append(held.job)
                continue
            reply = encode_response(PacketType.JOB_CREATED, self.handles.of(existing))
            for session, index in held.replies:
                if not session.closed and index < len(session.out):
                    session.out[index] = reply
            dropped.append(held.job)
        return ready, dropped

    def job(self, handle: bytes) -> StoredJob | None:
        """The job with this handle if another broker holds it."""
        number = any_number(handle)
        if self.store is None or number is None:
            return None
        return self.store.find_elsewhere(number)

    def result(self, handle: bytes) -> KeptResult | None:
        """The kept result with this handle from the shared store (another broker's, or
        an earlier run's of this one)."""
        number = any_number(handle)
        if self.store is None or number is None:
            return None
        return self.store.find_result(number)

    def own_handle(self, handle: bytes) -> bytes | None:
        """With a shared store, the handle this broker gives the job another broker's
        handle (or an application's ``spoolgear_jobs:N``) names: job numbers are unique
        across the store whatever the prefix, so any broker can answer for any job."""
        number = any_number(handle)
        return None if self.store is None or number is None else self.handles.of(number)

    def schedule_holder(self, function: bytes, unique: bytes) -> str | None:
        """The broker holding a schedule of ``function`` with this unique, if another."""
        if self.store is None or not unique:
            return None
        return self.store.schedule_holder(function, unique)
