"""Group commit: one store transaction per event-loop turn, written off the loop.

At the end of a turn the server calls ``kick()``. If the journal holds
operations and no commit is running, they go to a single writer thread as one
batch. When it is on disk the broker releases the replies that waited for it
(JOB_CREATED of stored jobs) and the next batch, which kept filling meanwhile,
goes out. So the commit rate adapts to the load: one fsync covers whatever
arrived while the previous one ran. ``commit_delay`` spaces commits at least
that far apart, so under load each one carries more (PostgreSQL's commit_delay).

Page requests of a paging broker (``broker/core/paging.py``) ride along: they
are read right after the batch taken with them, on the same thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from broker.core.broker import Broker
from broker.core.paging import PageRequest, read_pages
from broker.errors import StoreUnavailable
from broker.store.base import Page, PagingStore, Store
from broker.store.operations import Operation

log = logging.getLogger("spoolgear.store")


class Committer:
    def __init__(
        self,
        broker: Broker,
        store: Store,
        *,
        commit_delay: float,
        on_failure: Callable[[BaseException], None],
    ) -> None:
        self.broker = broker
        self.store = store
        self.commit_delay = commit_delay
        self.on_failure = on_failure
        self.loop = asyncio.get_running_loop()
        self._next_commit_at = 0.0
        self._delayed: asyncio.TimerHandle | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spoolgear-store")
        self._in_flight: asyncio.Future[list[Page]] | None = None

    def kick(self) -> None:
        journal = self.broker.journal
        if self._in_flight is not None or journal is None:
            return
        pager = self.broker.pager
        if not journal.ops and (pager is None or not pager.requests):
            return
        wait = self._next_commit_at - self.loop.time()
        if wait > 0:
            if self._delayed is None:
                self._delayed = self.loop.call_later(wait, self._after_delay)
            return
        self._next_commit_at = self.loop.time() + self.commit_delay
        number, batch = journal.take()
        requests = self.broker.take_page_requests()
        future = self.loop.run_in_executor(self._writer, self._write, batch, requests)
        self._in_flight = future
        future.add_done_callback(lambda done: self._done(number, requests, done))

    def _write(self, batch: list[Operation], requests: list[PageRequest]) -> list[Page]:
        if batch:
            self.store.write(batch)
        if not requests:
            return []
        assert isinstance(self.store, PagingStore)
        return read_pages(self.store, requests)

    def _after_delay(self) -> None:
        self._delayed = None
        self.kick()

    def _done(
        self, number: int, requests: list[PageRequest], future: asyncio.Future[list[Page]]
    ) -> None:
        self._in_flight = None
        error = future.exception()
        if error is not None:
            log.critical(
                "%s",
                error
                if isinstance(error, StoreUnavailable)
                else f"writing to {self.store.describe()} failed: {error}",
            )
            self.on_failure(error)
            return
        self.broker.batch_committed(number)
        for request, rows in zip(requests, future.result(), strict=True):
            self.broker.paged_in(request, rows)
        self.broker.flush()
        self.kick()

    def abandon(self) -> None:
        """The store failed: release it without writing what is left (it cannot be)."""
        if self._delayed is not None:
            self._delayed.cancel()
        self._writer.shutdown(wait=True)
        self.store.close()

    async def close(self) -> None:
        """Write what is still journaled, then release the store."""
        if self._delayed is not None:
            self._delayed.cancel()
        while self._in_flight is not None:
            await asyncio.shield(self._in_flight)
        journal = self.broker.journal
        if journal is not None and journal.ops:
            _, batch = journal.take()
            await self.loop.run_in_executor(self._writer, self.store.write, batch)
        self._writer.shutdown()
        self.store.close()
