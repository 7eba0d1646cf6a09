"""Bounded queues: past a window, stored background jobs live only in the store.

A queue of ten million background jobs must not cost ten million objects. With
a store that can page (SQLite), each (function, priority) queue keeps at most
``window`` jobs in memory. Once a queue is full, further jobs for it are
*spilled*: written to the store as usual, counted, and dropped from memory.
While a queue has spilled jobs every new arrival spills too, so memory holds
the head of the queue and the store holds the rest, in order (by ``seq``).

When a queue drains to half its window the broker asks for a page: the next
jobs at or after the first spilled ``seq``, at most ``--page-bytes`` of payload, and
whether the store holds more (so the count of spilled jobs never depends on
guessing from a page's length). The request travels with the next
store batch and runs on the writer thread right after it, so it sees every
job spilled before it was made. Its answer refills the queue.

Everything about a spilled job the broker must still answer (coalescing on its
unique, GET_STATUS, ``cancel job``) is looked up in the store; jobs spilled in
a batch not yet on disk are remembered in ``recent`` until it is.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from broker.core.handles import Handles
from broker.core.journal import Journal
from broker.core.model import Function, Job, Session
from broker.protocol.packets import Packet
from broker.store.base import Page, PagingStore, SharedStore
from broker.store.operations import StoredJob

QueueKey = tuple[bytes, int]


@dataclass(slots=True)
class PageRequest:
    function: bytes
    priority: int
    first_seq: int
    limit: int
    expected: int = 0
    """Spilled jobs counted when the request left: all of them are in the store then."""


def read_pages(store: PagingStore, requests: Sequence[PageRequest]) -> list[Page]:
    """Run on the writer thread, after the batch the requests travel with."""
    return [store.page(r.function, r.priority, r.first_seq, r.limit) for r in requests]


class Paging:
    """What a store that cannot page does (the memory store): every job stays in
    memory, nothing is ever spilled, found in the store or asked for."""

    spills = False
    """Whether jobs may ever go to the store only (the enqueue path skips ``should_spill``
    without it)."""

    def may_spill(self, function: Function, background: bool, unique: bytes) -> bool:
        """Whether a job like this may wait in the store only (see ``Pager``)."""
        return False

    def should_spill(self, job: Job, held: int, queued_bytes: int, max_queued_bytes: int) -> bool:
        """Whether a job about to join a queue of ``held`` jobs goes to the store only."""
        return False

    def spill(self, job: Job) -> None:
        raise AssertionError("nothing spills without a paging store")

    def refill(self, function: Function, priority: int) -> None:
        """Ask for a page if a spilling queue runs low."""

    def park(self, session: Session, grab: Packet) -> None:
        raise AssertionError("nothing spills without a paging store")

    def unpark(self) -> list[tuple[Session, Packet]]:
        return []

    def resume(self, function: Function, priority: int, count: int, first_seq: int) -> None:
        """At start-up: ``count`` jobs of a queue wait in the store from ``first_seq`` on."""
        raise AssertionError("only a paging broker loads windows")

    def wants_pages(self) -> bool:
        return False

    def take_requests(self) -> list[PageRequest]:
        return []

    def committed(self, batch: int) -> None:
        """Jobs spilled in batches up to ``batch`` can be found in the store now."""

    def paged(self, function: Function, request: PageRequest, page: Page, added: int) -> None:
        raise AssertionError("nothing spills without a paging store")

    def is_vanished(self, number: int) -> bool:
        return False

    def find(self, handle: bytes) -> StoredJob | None:
        """The spilled job with this handle, if any."""
        return None

    def find_by_key(self, key: tuple[bytes, ...]) -> bytes | None:
        """The handle of a spilled job a background submission coalesces onto."""
        return None

    def find_unique(self, unique: bytes) -> StoredJob | None:
        """A spilled job with this unique, of any function (GET_STATUS_UNIQUE)."""
        return None

    def cancel(self, handle: bytes) -> bool:
        """Remove a spilled job (admin ``cancel job``); false if there is none."""
        return False


class Pager(Paging):
    """Queue windows over a paging store: the bookkeeping next to the broker's queues."""

    spills = True

    def __init__(
        self,
        store: PagingStore,
        window: int,
        *,
        functions: Mapping[bytes, Function],
        handles: Handles,
        journal: Journal,
    ) -> None:
        self.store = store
        self.coalesces_at_commit = isinstance(store, SharedStore)
        """A shared store's unique index finds a spilled job with the same unique when the
        new one is written (``core/other_brokers.py``): no look-up per submission, which would
        be a network round trip on the event loop."""
        self.window = window
        self.functions = functions
        self.handles = handles
        self.journal = journal
        self.first_seq: dict[QueueKey, int] = {}
        """Per spilling queue, the seq of its first job not in memory."""
        self.requests: list[PageRequest] = []
        self.in_flight: set[QueueKey] = set()
        self.vanished: dict[int, tuple[QueueKey, int]] = {}
        """Spilled jobs cancelled meanwhile (number -> queue, seq): skipped if a page
        brings them before their deletion is on disk."""
        self.recent: dict[tuple[bytes, ...], tuple[int, bytes]] = {}
        """Coalescing key -> (batch, handle) of spilled jobs not yet committed."""
        self._recent_order: deque[tuple[int, tuple[bytes, ...]]] = deque()
        self.parked: list[tuple[Session, Packet]] = []
        """GRAB requests that found memory empty while a page they can use was coming."""

    def may_spill(self, function: Function, background: bool, unique: bytes) -> bool:
        """Background, of a function that is not transient, and not coalescing on its
        payload (those are found by payload, which the store does not index)."""
        return background and not function.transient and unique != b"-"

    def should_spill(self, job: Job, held: int, queued_bytes: int, max_queued_bytes: int) -> bool:
        """Once a queue spills, every arrival does (the store holds its tail, in order);
        it starts when the window is full, in jobs or in payload bytes, or memory is."""
        function, rank = job.function, job.priority
        return (
            not job.clients
            and self.may_spill(function, job.background, job.unique)
            and bool(
                function.spilled.get(rank)
                or held >= self.window
                or function.held_bytes.get(rank, 0) >= self.store.page_bytes
                or queued_bytes >= max_queued_bytes
            )
        )

    def spill(self, job: Job) -> None:
        """Count a just-journaled job as left to the store (the caller forgets it)."""
        function, priority = job.function, job.priority
        if not function.spilled[priority]:
            self.first_seq[(function.name, priority)] = self.journal.last_seq
        function.spilled[priority] += 1
        if job.coalesce_key is not None:
            self.recent[job.coalesce_key] = (self.journal.building, job.handle)
            self._recent_order.append((self.journal.building, job.coalesce_key))

    def refill(self, function: Function, priority: int) -> None:
        """Ask for a page once a spilling queue is down to half its window (in jobs and
        in payload bytes), unless one is on its way."""
        key = (function.name, priority)
        held = len(function.queues.get(priority, ()))
        if (
            function.spilled[priority]
            and held <= self.window // 2
            and function.held_bytes.get(priority, 0) <= self.store.page_bytes // 2
            and key not in self.in_flight
        ):
            self.in_flight.add(key)
            self.requests.append(
                PageRequest(function.name, priority, self.first_seq[key], self.window - held)
            )

    def resume(self, function: Function, priority: int, count: int, first_seq: int) -> None:
        function.spilled[priority] = count
        self.first_seq[(function.name, priority)] = first_seq

    def wants_pages(self) -> bool:
        return bool(self.requests)

    def park(self, session: Session, grab: Packet) -> None:
        self.parked.append((session, grab))

    def unpark(self) -> list[tuple[Session, Packet]]:
        parked, self.parked = self.parked, []
        return parked

    def take_requests(self) -> list[PageRequest]:
        """The pages to read after the batch being taken now."""
        requests, self.requests = self.requests, []
        for request in requests:
            request.expected = self.functions[request.function].spilled[request.priority]
        return requests

    def committed(self, batch: int) -> None:
        order = self._recent_order
        while order and order[0][0] <= batch:
            _, key = order.popleft()
            entry = self.recent.get(key)
            if entry is not None and entry[0] <= batch:
                del self.recent[key]

    def paged(self, function: Function, request: PageRequest, page: Page, added: int) -> None:
        """A page arrived and ``added`` of its jobs joined the queue; the next page
        starts after it."""
        priority = request.priority
        key = (function.name, priority)
        # The last page holds the rest of the jobs counted when the request left.
        consumed = added if page.more else request.expected
        function.spilled[priority] = max(0, function.spilled[priority] - consumed)
        self.in_flight.discard(key)
        if not page.rows:
            return
        last_seq = page.rows[-1].seq
        self.first_seq[key] = last_seq + 1
        if self.vanished:
            self.vanished = {
                number: (queue, seq)
                for number, (queue, seq) in self.vanished.items()
                if queue != key or seq > last_seq
            }

    def is_vanished(self, number: int) -> bool:
        return number in self.vanished

    def _spilled(self, row: StoredJob | None) -> StoredJob | None:
        """``row`` if it is one of the spilled jobs of its queue (not a job in memory,
        running, delayed, or ended with its deletion still uncommitted)."""
        if row is None:
            return None
        function = self.functions.get(row.function)
        if function is None or not function.spilled[row.priority]:
            return None
        first = self.first_seq.get((row.function, row.priority))
        if (
            first is None
            or row.seq < first
            or row.running
            or row.run_at != 0
            or row.number in self.vanished
        ):
            return None
        return row

    def find(self, handle: bytes) -> StoredJob | None:
        number = self.handles.number(handle)
        return None if number is None else self._spilled(self.store.find(number))

    def find_by_key(self, key: tuple[bytes, ...]) -> bytes | None:
        recent = self.recent.get(key)
        if recent is not None:
            return recent[1]
        function = self.functions.get(key[0])
        if len(key) != 2 or function is None or not function.has_spilled:
            return None  # the unique "-" (coalescing on the payload) never spills
        if self.coalesces_at_commit:
            return None
        row = self._spilled(self.store.find_unique(key[1], key[0]))
        return None if row is None else self.handles.of(row.number)

    def find_unique(self, unique: bytes) -> StoredJob | None:
        return self._spilled(self.store.find_unique(unique, None)) if unique else None

    def cancel(self, handle: bytes) -> bool:
        row = self.find(handle)
        if row is None:
            return False
        self.functions[row.function].spilled[row.priority] -= 1
        self.vanished[row.number] = ((row.function, row.priority), row.seq)
        self.journal.stored_job_ended(row.number)
        return True
