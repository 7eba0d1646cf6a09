"""Results of background jobs: how each ended, kept for ``--keep-results`` after it did.

A background job's client is gone by the time it ends, so whoever wants its outcome (a
Django ``TaskResult.refresh()``, an operator, ``spoolgear result``) asks later, by its
handle. While the job lives its state comes from the job itself; once it ends, a
``KeptResult`` holds its status, times, the worker of each attempt, each failed attempt's
reason and WORK_COMPLETE's data (up to ``--max-result-bytes``). Results are journaled, so
a durable store keeps them across restarts; the oldest go first past
``--max-kept-results``, and every result goes once ``--keep-results`` seconds have passed.
With ``--keep-results 0`` nothing is recorded at all.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import NamedTuple

from broker.core.handles import handle_number
from broker.core.journal import Journal
from broker.core.model import Attempts, Job, Session
from broker.core.settings import BrokerSettings
from broker.store.operations import KeptResult, StoredJob

SUCCESSFUL = "successful"
FAILED = "failed"
CANCELLED = "cancelled"
QUEUED = "queued"
RUNNING = "running"
# Seconds between two expiries in the store when this broker's own results did not expire.
STORE_EXPIRY_SECONDS = 60.0
# Results ``show results`` lists at most, newest first.
MAX_LISTED_RESULTS = 500


class JobState(NamedTuple):
    """What a lookup by handle answers: a kept result, or a live job's state so far in the
    same shape (status ``queued`` or ``running``, no end yet)."""

    handle: bytes
    """As it was asked for (another broker's, with a shared store)."""
    record: KeptResult
    attempts: int
    """How many times it started (the running attempt included)."""
    after: tuple[bytes, ...] = ()
    """A live job that runs after others: their handles (``workflows.py``)."""
    after_mode: str = ""
    """``chain`` or ``group``."""
    waiting: int = 0
    """How many of those it still waits for."""


def _keep_all(data: bytes) -> bytes:
    return data


def job_record(
    job: Job,
    status: str,
    finished_at: float,
    value: bytes = b"",
    keep: Callable[[bytes], bytes] = _keep_all,
) -> KeptResult:
    """``job`` as a result: what ``keep`` leaves of its value and payload, with their
    sizes."""
    history = job.history or Attempts(0.0)
    return KeptResult(
        handle_number(job.handle),
        job.function.name,
        status,
        job.created,
        history.first_started,
        history.last_started,
        finished_at,
        tuple(history.workers),
        history.errors,
        keep(value),
        len(value),
        keep(job.data),
        len(job.data),
    )


class ResultBook:
    def __init__(
        self, settings: BrokerSettings, journal: Journal, clock: Callable[[], float]
    ) -> None:
        self.keep = settings.keep_results
        self.enabled = self.keep > 0
        self.max_value = settings.max_result_bytes
        self.limit = settings.max_kept_results
        self.byte_limit = settings.max_kept_result_bytes
        self.bytes = 0
        """Bytes of values and payloads the kept results hold."""
        self.journal = journal
        self.clock = clock
        # By handle, oldest end first (the order they are forgotten in).
        self._kept: dict[bytes, KeptResult] = {}
        self._next_store_expiry = 0.0

    def __len__(self) -> int:
        return len(self._kept)

    def submitted(self, job: Job) -> None:
        if self.enabled and job.background:
            job.created = self.clock()

    def started(self, job: Job, worker: Session) -> None:
        if not (self.enabled and job.background):
            return
        now = self.clock()
        history = job.history
        if history is None:
            history = job.history = Attempts(now)
        history.last_started = now
        history.workers.append(worker.label)

    def attempt_failed(self, job: Job, reason: str) -> None:
        if self.enabled and job.history is not None:
            job.history.errors = (*job.history.errors, reason)

    def never_ran(self, job: Job, reason: str) -> None:
        """``job`` ends without having run (a chain it belonged to stopped): ``reason`` is
        its one error."""
        if self.enabled and job.history is None:
            job.history = Attempts(0.0)
            job.history.errors = (reason,)

    def ended(self, job: Job, status: str, value: bytes = b"") -> None:
        """Keep how ``job`` ended (a background job's end only)."""
        if not (self.enabled and job.background):
            return
        result = job_record(job, status, self.clock(), value, self._within_budget)
        self._keep(job.handle, result)
        self.journal.result_kept(result)
        self._forget_oldest()

    def _within_budget(self, data: bytes) -> bytes:
        return data if len(data) <= self.max_value else b""

    def find(self, handle: bytes) -> KeptResult | None:
        return self._kept.get(handle)

    def newest(self, function: bytes | None = None) -> list[tuple[bytes, KeptResult]]:
        """At most ``MAX_LISTED_RESULTS`` kept results (of ``function``), newest first."""
        listed = []
        for handle in reversed(self._kept):
            result = self._kept[handle]
            if function is None or result.function == function:
                listed.append((handle, result))
                if len(listed) == MAX_LISTED_RESULTS:
                    break
        return listed

    def restore(self, handle: bytes, result: KeptResult) -> None:
        """Put back a result loaded from the store, oldest first (the store forgets the
        oldest too when there are more than ``--max-kept-results``); none with
        ``--keep-results 0``."""
        if not self.enabled:
            return
        self._keep(handle, result)
        self._forget_oldest()

    def expire(self) -> int:
        """Forget the results kept longer than ``--keep-results`` (called every second or
        so); returns how many of this broker's went. The store is told whenever some did,
        and at least every ``STORE_EXPIRY_SECONDS``: it may hold results this broker does
        not (another broker's, on a shared store, or an earlier run's)."""
        if not self.enabled:
            return 0
        now = self.clock()
        before = now - self.keep
        expired = 0
        while self._kept:
            oldest = next(iter(self._kept))
            if self._kept[oldest].finished_at > before:
                break
            self._drop(oldest)
            expired += 1
        if expired or now >= self._next_store_expiry:
            self._next_store_expiry = now + STORE_EXPIRY_SECONDS
            self.journal.results_expired(before)
        return expired

    def _keep(self, handle: bytes, result: KeptResult) -> None:
        self._kept[handle] = result
        self.bytes += len(result.value) + len(result.data)

    def _drop(self, handle: bytes) -> KeptResult:
        result = self._kept.pop(handle)
        self.bytes -= len(result.value) + len(result.data)
        return result

    def _forget_oldest(self) -> None:
        """Past ``--max-kept-results`` or ``--max-kept-result-bytes``: the oldest go."""
        numbers = []
        while len(self._kept) > self.limit or self.bytes > self.byte_limit:
            numbers.append(self._drop(next(iter(self._kept))).number)
        if numbers:
            self.journal.results_dropped(tuple(numbers))


def live_state(handle: bytes, job: Job, after: tuple[bytes, ...] = ()) -> JobState:
    """A job the broker holds now, as a lookup for ``handle`` answers for it (``after``:
    the handles of the jobs it runs after)."""
    running = job.worker is not None
    record = job_record(job, RUNNING if running else QUEUED, 0.0)
    mode = job.after.partition(b" ")[0].decode()
    return JobState(handle, record, job.retries + running, after, mode, job.waiting)


def kept_state(handle: bytes, result: KeptResult) -> JobState:
    return JobState(handle, result, len(result.workers))


def stored_state(handle: bytes, stored: StoredJob) -> JobState:
    """A job held only in the store (beyond its queue's window, or by another broker):
    its attempts so far are counted there, not named."""
    status = RUNNING if stored.running else QUEUED
    data = stored.data
    record = KeptResult(
        stored.number, stored.function, status, 0.0, 0.0, 0.0, 0.0, (), (), b"", 0, data, len(data)
    )
    return JobState(handle, record, stored.attempts + stored.running)


def state_json(state: JobState, *, with_bytes: bool = True) -> bytes:
    """The admin protocol's ``show result`` line: times in epoch seconds (null when
    unknown), the value and the payload in base64 (null when over ``--max-result-bytes``,
    or when ``with_bytes`` is false: ``show results`` lists without them)."""
    record = state.record if with_bytes else state.record._replace(value=b"", data=b"")
    workflow = (
        {
            "after": [handle.decode() for handle in state.after],
            "after_mode": state.after_mode,
            "waiting": state.waiting,
        }
        if state.after
        else {}
    )
    return json.dumps(
        workflow
        | {
            "handle": state.handle.decode("utf-8", "replace"),
            "function": record.function.decode("utf-8", "replace"),
            "status": record.status,
            "enqueued_at": record.enqueued_at or None,
            "started_at": record.started_at or None,
            "last_started_at": record.last_started_at or None,
            "finished_at": record.finished_at or None,
            "attempts": state.attempts,
            "workers": list(record.workers),
            "errors": list(record.errors),
            "value": _kept(record.value, record.value_size),
            "value_size": record.value_size,
            "data": _kept(record.data, record.data_size),
            "data_size": record.data_size,
        },
        separators=(",", ":"),
    ).encode()


def _kept(data: bytes, size: int) -> str | None:
    return base64.b64encode(data).decode() if len(data) == size else None
