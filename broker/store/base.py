"""The store contract: what the broker writes, in what units, and what it gets back at start-up.

The broker owns all job state in memory and tells the store what changed, as a
batch of operations per event-loop turn. ``write(batch)`` applies a batch and,
for a durable store, returns only once it is on disk (the broker acknowledges
background submissions after that). ``load()`` returns
what survived: queued and running background jobs in dispatch order, schedules,
the failed list, and the first handle number not yet reserved. A
``PagingStore`` can also return just the head of each queue and serve the rest
in pages later (``broker/core/paging.py``).

Only background jobs are stored: a foreground job dies with its client anyway,
as in gearmand. Jobs are keyed by their handle number, which never repeats
across restarts because numbers are reserved in blocks (``ReserveHandles``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from broker.store.operations import FailedJob, Operation, StoredJob, StoredSchedule

PAGE_BYTES = 64 << 20
"""Payload bytes read into memory by one page (or one queue's window at start-up), so
queues of large jobs page in bounded steps; a single larger job still comes alone."""


class Page(NamedTuple):
    """Jobs read from one queue of the store, and whether more were left there."""

    rows: list[StoredJob]
    more: bool


@dataclass(frozen=True, slots=True)
class SpilledQueue:
    """Jobs of one (function, priority) queue left in the store by a windowed load."""

    function: bytes
    priority: int
    count: int
    first_seq: int


@dataclass
class StoredState:
    jobs: list[StoredJob] = field(default_factory=list)
    spilled: list[SpilledQueue] = field(default_factory=list)
    next_seq: int = 1
    """Queue positions below this are taken."""
    schedules: list[StoredSchedule] = field(default_factory=list)
    failed: list[FailedJob] = field(default_factory=list)
    next_number: int = 1
    problems: list[str] = field(default_factory=list)
    """Human-readable reports of records that could not be loaded (they are skipped)."""


class Store(ABC):
    """A job store. ``write`` is called from one writer thread, never concurrently."""

    durable: bool
    sync_seconds = 0.0
    """Seconds the last ``write`` spent making its batch durable (SQLite's COMMIT with its
    fsync; the spool store's fsyncs), for the metrics."""

    @abstractmethod
    def load(self, window: int = 0) -> StoredState:
        """Everything stored; called once, before the broker accepts connections.

        A ``PagingStore`` returns at most ``window`` runnable jobs per queue (0 = all)
        and counts the rest in ``spilled``; other stores ignore ``window``.
        """

    @abstractmethod
    def write(self, batch: Sequence[Operation]) -> None:
        """Apply ``batch``; a durable store returns only once all of it is on disk.

        Every operation is atomic. SQLite also makes the whole batch atomic; the
        spool store cannot, so after a crash part of a batch may be applied (which
        still never loses an acknowledged job).
        """

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """The store as a URL, for the start-up banner and logs."""


class PagingStore(Store):
    """A store that can serve queued jobs a page at a time and find single jobs."""

    page_bytes: int = PAGE_BYTES
    """Payload bytes one page (or one queue's window at start-up) reads at most."""

    @abstractmethod
    def page(self, function: bytes, priority: int, first_seq: int, limit: int) -> Page:
        """Runnable, not running jobs of one queue from ``first_seq`` on, in order: at most
        ``limit`` of them and ``page_bytes`` of payload (at least one job), and whether
        the queue holds more (called on the writer thread)."""

    @abstractmethod
    def find(self, number: int) -> StoredJob | None:
        """The stored job with this handle number (called on the event loop)."""

    @abstractmethod
    def find_unique(self, unique: bytes, function: bytes | None) -> StoredJob | None:
        """A stored job with this unique, of ``function`` if given (event loop)."""


class MemoryStore(Store):
    """No durability: jobs live and die with the process (gearmand's default)."""

    durable = False

    def load(self, window: int = 0) -> StoredState:
        return StoredState()

    def write(self, batch: Sequence[Operation]) -> None:
        raise AssertionError("the broker does not journal to a store that is not durable")

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "memory:"
