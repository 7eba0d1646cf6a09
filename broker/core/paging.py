"""Bounded queues: past a window, stored background jobs live only in the store.

A queue of ten million background jobs must not cost ten million objects. With
a store that can page (SQLite), each (function, priority) queue keeps at most
``window`` jobs in memory. Once a queue is full, further jobs for it are
*spilled*: written to the store as usual, counted, and dropped from memory.
While a queue has spilled jobs every new arrival spills too, so memory holds
the head of the queue and the store holds the rest, in order (by ``seq``).

When a queue drains to half its window the broker asks for a page: the next
jobs at or after the first spilled ``seq``, at most ``PAGE_BYTES`` of payload, and
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
from collections.abc import Sequence
from dataclasses import dataclass

from broker.core.model import Session
from broker.protocol.packets import Packet
from broker.store.base import Page, PagingStore
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


class Pager:
    """The paging bookkeeping the broker keeps next to its queues."""

    def __init__(self, store: PagingStore, window: int) -> None:
        self.store = store
        self.window = window
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

    def want_page(self, key: QueueKey, limit: int) -> bool:
        """Ask for a page unless one is on its way; true if this made a new request."""
        if key in self.in_flight:
            return False
        self.in_flight.add(key)
        self.requests.append(PageRequest(key[0], key[1], self.first_seq[key], limit))
        return True

    def remember(self, key: tuple[bytes, ...], batch: int, handle: bytes) -> None:
        self.recent[key] = (batch, handle)
        self._recent_order.append((batch, key))

    def committed(self, batch: int) -> None:
        """Spilled jobs of batches up to ``batch`` can now be found in the store."""
        order = self._recent_order
        while order and order[0][0] <= batch:
            _, key = order.popleft()
            entry = self.recent.get(key)
            if entry is not None and entry[0] <= batch:
                del self.recent[key]

    def is_spilled(self, row: StoredJob, spilled: int) -> bool:
        """Whether a stored row is one of the ``spilled`` jobs of its queue (not a job
        in memory, running, delayed, or ended with its deletion still uncommitted)."""
        first = self.first_seq.get((row.function, row.priority))
        return (
            spilled > 0
            and first is not None
            and row.seq >= first
            and not row.running
            and row.run_at == 0
            and row.number not in self.vanished
        )

    def paged(self, key: QueueKey, last_seq: int | None) -> None:
        """A page for ``key`` arrived; the next one starts after ``last_seq``."""
        self.in_flight.discard(key)
        if last_seq is None:
            return
        self.first_seq[key] = last_seq + 1
        if self.vanished:
            self.vanished = {
                number: (queue, seq)
                for number, (queue, seq) in self.vanished.items()
                if queue != key or seq > last_seq
            }
