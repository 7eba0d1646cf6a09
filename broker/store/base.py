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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from broker.store.operations import (
    FailedJob,
    FlowRule,
    KeptResult,
    Operation,
    StoredJob,
    StoredSchedule,
)

PAGE_BYTES = 64 << 20
"""Payload bytes read into memory by one page (or one queue's window at start-up), so
queues of large jobs page in bounded steps; a single larger job still comes alone."""

DEFAULT_STORE_RETRY = 30.0
"""Seconds a write to a store on the network (PostgreSQL) keeps reconnecting before it
fails and the broker stops."""

SYNC_LEVELS = ("full", "normal")
"""How far a durable store goes before a job is acknowledged (``--sync``): ``full``: on disk
(fsync), surviving a power cut; ``normal``: handed to the operating system (SQLite's WAL
without fsync per commit, spool files without fsync, PostgreSQL with
``synchronous_commit = off``), surviving a crash of the broker but not of the machine or
the database server, which is all uWSGI's spooler ever promises."""

DEFAULT_SYNC = "full"

DEFAULT_STORE_LEASE = 10.0
"""Seconds a broker's lease on a shared store (PostgreSQL) lasts: after a broker dies, the
others take over its jobs this long after its last write or renewal."""


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
    results: list[KeptResult] = field(default_factory=list)
    flow_rules: list[FlowRule] = field(default_factory=list)
    """Kept results of ended jobs, oldest end first."""
    next_number: int = 1
    problems: list[str] = field(default_factory=list)
    """Human-readable reports of records that could not be loaded (they are skipped)."""


def flow_rules(rows: Iterable[Sequence[Any]], problems: list[str]) -> list[FlowRule]:
    """Stored flow rules (pattern, rate, per, running, paused, per_key) that make sense; the
    others are reported and skipped (a damaged row must not stop a start)."""
    rules = []
    for row in rows:
        try:
            pattern, rate, per, running, paused, per_key = row
            rule = FlowRule(
                bytes(pattern), int(rate), float(per), int(running), bool(int(paused)), int(per_key)
            )
        except (TypeError, ValueError):
            rule = None
        if rule is None or min(rule.rate, rule.running, rule.per_key) < 0 or rule.per <= 0:
            problems.append(f"skipped a flow rule with bad values: {row!r}")
            continue
        rules.append(rule)
    return rules


class Store(ABC):
    """A job store. ``write`` is called from one thread at a time, never concurrently:
    the writer thread, or the event loop's own when ``writes_on_loop``."""

    durable: bool
    writes_on_loop = False
    """Whether ``write`` is quick enough to run on the event loop's thread: nothing to
    wait for (no fsync, no network), so a hand-off to the writer thread and back costs
    more than the write itself."""
    lone_writes_on_loop = False
    """Whether a lone client's small batch may be written on the event loop's thread even
    though ``write`` waits for the disk: a local file's fsync, not a network round trip.
    The committer does so only when a reply waits for a batch of at most
    ``LONE_BATCH_OPERATIONS``: one caller waiting, nobody else arriving, so the hand-offs
    to the writer thread and back would be most of its wait."""
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


@dataclass
class Claimed:
    """Jobs and schedules a broker took over from brokers that stopped (or from nobody:
    jobs an application wrote in its own transaction)."""

    jobs: list[StoredJob] = field(default_factory=list)
    schedules: list[StoredSchedule] = field(default_factory=list)
    more: bool = False
    """Whether jobs were left to take over (a sweep takes a bounded number)."""


class BrokerRow(NamedTuple):
    """A broker sharing the store, as ``show brokers`` lists it."""

    id: int
    name: str
    state: str
    """``this broker``, ``live``, ``lease ran out`` or ``stopped``."""
    jobs: int
    """Jobs it owns in the store (running ones included)."""
    running: int


class SharedStore(PagingStore):
    """A paging store several brokers use at once (PostgreSQL). Each broker holds a
    lease it renews with every write; ``sweep`` renews it when the broker is idle and
    takes over the jobs of brokers whose lease ran out. Past ``lease_valid_until`` the
    broker hands out no job before a write has renewed the lease."""

    sweep_seconds: float
    """How often the broker calls ``sweep``."""
    coalesced: dict[int, int]
    """After a ``write``: its new jobs the store did not add because a job of the same
    function with the same unique was there (their number -> that job's number)."""

    @abstractmethod
    def sweep(self) -> Claimed:
        """Renew the lease and take over what stopped brokers left (writer thread)."""

    @abstractmethod
    def find_elsewhere(self, number: int) -> StoredJob | None:
        """The job with this number if another broker (or nobody yet) holds it."""

    @abstractmethod
    def find_result(self, number: int) -> KeptResult | None:
        """The kept result with this number, whichever broker (or earlier run) kept it."""

    @abstractmethod
    def schedule_holder(self, function: bytes, unique: bytes) -> str | None:
        """The broker (as ``id N (name)``) holding a schedule of ``function`` with this
        unique, if it is another one."""

    @abstractmethod
    def brokers(self) -> list[BrokerRow]:
        """The brokers sharing the store, this one first, and a row (id 0) for jobs
        applications wrote that no broker has taken over yet (event loop)."""

    @abstractmethod
    def failed_jobs(self) -> list[FailedJob]:
        """The failed list every broker of the store shares, oldest first (event loop)."""

    @abstractmethod
    def listen(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` (from another thread) when an application commits a job."""

    @abstractmethod
    def lease_valid_until(self) -> float:
        """Until when (``time.monotonic()``) the lease holds without another renewal."""


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
