"""The failed list: background jobs that ran out of attempts, kept for inspection and replay.

Bounded by ``limit``: past it the oldest record is forgotten, with a warning.
Every change is journaled, so the list survives restarts with a durable store.
"""

from __future__ import annotations

import logging
from collections.abc import ItemsView, Iterable

from broker.core.handles import handle_number
from broker.core.journal import Journal
from broker.core.model import Job
from broker.store.operations import FailedJob

log = logging.getLogger("spoolgear.broker")


class FailedList:
    def __init__(self, limit: int, journal: Journal) -> None:
        self.limit = limit
        self.journal = journal
        self._records: dict[bytes, FailedJob] = {}

    def __len__(self) -> int:
        return len(self._records)

    def items(self) -> ItemsView[bytes, FailedJob]:
        return self._records.items()

    def restore(self, handle: bytes, record: FailedJob) -> None:
        """Put back a record loaded from the store (nothing to journal)."""
        self._records[handle] = record

    def reload(self, records: Iterable[tuple[bytes, FailedJob]]) -> None:
        """With a shared store, which holds the list for every broker: take it as it is
        there now (nothing to journal)."""
        self._records = dict(records)

    def add_job(self, job: Job, error: str, when: float) -> None:
        """A background job ran out of attempts with ``error``, at ``when``."""
        number = handle_number(job.handle)
        record = FailedJob(
            number, job.function.name, job.unique, job.data, job.priority, job.retries, error, when
        )
        self.add(job.handle, record)

    def add(self, handle: bytes, record: FailedJob) -> None:
        self._records[handle] = record
        self.journal.job_failed(record)
        if len(self._records) > self.limit:
            oldest = next(iter(self._records))
            log.warning(
                "failed list is full (%d): forgetting the oldest, %s", self.limit, oldest.decode()
            )
            self.pop(oldest)

    def pop(self, handle: bytes) -> FailedJob:
        record = self._records.pop(handle)
        self.journal.failed_removed(record.number)
        return record

    def drop(self, handle: bytes | None) -> int:
        """Forget failed jobs (all when ``handle`` is None); returns how many."""
        handles = self.select(handle)
        for failed_handle in handles:
            self.pop(failed_handle)
        return len(handles)

    def select(self, handle: bytes | None) -> list[bytes]:
        """``None`` means every failed job; an unknown handle selects nothing."""
        if handle is None:
            return list(self._records)
        return [handle] if handle in self._records else []
