"""Group commit: one store transaction per event-loop turn, written off the loop.

At the end of a turn the server calls ``kick()``. If the broker has a batch
waiting and no commit is running, it goes to a single writer thread (or is
written at once on the loop's thread, for a store whose writes never wait:
``Store.writes_on_loop``, SQLite at ``--sync normal``). When it is
on disk the broker takes it back (``apply_batch``: the replies that waited for it
go out), callers of ``after_commit`` hear so, and the next batch, which kept
filling meanwhile, goes out. So the commit rate adapts to the load: one fsync
covers whatever arrived while the previous one ran. ``commit_delay`` (none by
default) spaces commits at least that far apart, so under load each one carries
more (PostgreSQL's commit_delay), at the cost of latency for a lone client.
``lazy_commit_delay`` spaces them when no reply waits for the batch (it only
records jobs handed out and finished, as in a drain): nobody waits longer, a
draining broker fsyncs a few hundred times a second instead of thousands, and a
crash may re-run the jobs that finished within that window (they would have run
again anyway had it come a moment earlier).

Page requests of a paging broker (``broker/core/paging.py``) ride along: they
are read right after the batch taken with them, on the same thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from broker.core.broker import Batch, Broker
from broker.core.histogram import BATCH_OPERATIONS, COMMIT_SECONDS, Histogram
from broker.core.paging import read_pages
from broker.core.restore import take_over
from broker.errors import StoreUnavailable
from broker.store.base import Claimed, Page, PagingStore, SharedStore, Store

log = logging.getLogger("spoolgear.store")

LONE_BATCH_OPERATIONS = 2
"""The most operations a batch, and the one before it, may hold for the batch to be written
on the loop's thread when its store has ``lone_writes_on_loop`` (a background submission is
one, a unique one two)."""
LONE_WRITE_SECONDS = 0.002
"""A write that took longer (a slow or stalled disk) sends the next ones to the writer
thread, until one is quick again: the loop never waits that long twice in a row."""


class Written(NamedTuple):
    pages: list[Page]
    seconds: float
    """How long the write took."""
    synced: float
    """How long its fsync (or COMMIT) took."""
    claimed: Claimed | None
    """What a sweep of a shared store took over, if one ran."""
    coalesced: dict[int, int]
    """New jobs a shared store already had under their unique (``SharedStore.coalesced``)."""


class Committer:
    def __init__(
        self,
        broker: Broker,
        store: Store,
        *,
        commit_delay: float,
        lazy_commit_delay: float,
        on_failure: Callable[[BaseException], None],
    ) -> None:
        self.broker = broker
        self.store = store
        self.commit_delay = commit_delay
        self.lazy_commit_delay = max(commit_delay, lazy_commit_delay)
        self.on_failure = on_failure
        self.loop = asyncio.get_running_loop()
        self._last_commit_at = -1e9
        self._delayed: asyncio.Handle | None = None
        self._delayed_until = 0.0
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spoolgear-store")
        self._in_flight: asyncio.Future[Written] | None = None
        self._failed = False
        self._slow_disk = False
        self._last_small = False
        """The batch before this one was small too: one caller at a time, it seems."""
        """The last write took over ``LONE_WRITE_SECONDS``: no write on the loop's thread."""
        self._closing = False
        """Set by ``close``/``abandon``: no new write or sweep starts (``close`` writes the
        rest itself)."""
        self._waiting: deque[tuple[int, Callable[[bool], None]]] = deque()
        """(batch, done) in batch order: told once that batch is on disk."""
        self.commits = 0
        self.taken_over = 0
        """Jobs a shared store's sweeps took over from brokers that stopped."""
        self.batch_operations = Histogram(BATCH_OPERATIONS)
        self.commit_seconds = Histogram(COMMIT_SECONDS)
        self.sync_seconds = Histogram(COMMIT_SECONDS)
        """Store transactions written, their sizes, how long each took (fsync included),
        and how long its fsync took."""
        self._shared = store if isinstance(store, SharedStore) else None
        self._sweep_wanted = False
        self._sweep_timer: asyncio.TimerHandle | None = None
        if self._shared is not None:
            broker.lease_deadline = self._shared.lease_valid_until()
            self._sweep_timer = self.loop.call_later(self._shared.sweep_seconds, self._sweep_now)
            self._shared.listen(self._sweep_from_thread)

    def after_commit(self, batch: int, done: Callable[[bool], None]) -> None:
        """``done(True)`` once ``batch`` is on disk (at once if it is), ``done(False)``
        if the store fails first."""
        if self._failed:
            done(False)
        elif batch <= self.broker.output.committed:
            done(True)
        else:
            self._waiting.append((batch, done))

    def _sweep_now(self) -> None:
        """A shared store's turn to renew the lease and take over stopped brokers' jobs
        (its timer, or an application committed a job)."""
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        self._sweep_wanted = True
        self.kick()

    def _sweep_from_thread(self) -> None:
        if not self._closing:
            self.loop.call_soon_threadsafe(self._sweep_now)

    def kick(self) -> None:
        if self._in_flight is not None or self._failed or self._closing:
            return
        if not (self._sweep_wanted or self.broker.batch_waiting()):
            return
        awaited = self._sweep_wanted or bool(self._waiting) or self.broker.commit_awaited()
        now = self.loop.time()
        due = self._last_commit_at + (self.commit_delay if awaited else self.lazy_commit_delay)
        if due > now:
            self._commit_at(due)
            return
        if self._delayed is not None:
            self._delayed.cancel()
            self._delayed = None
        self._last_commit_at = now
        batch = self.broker.take_batch()
        sweep, self._sweep_wanted = self._sweep_wanted, False
        small = len(batch.operations) <= LONE_BATCH_OPERATIONS
        lone, self._last_small = small and self._last_small, small
        if self.store.writes_on_loop or (lone and self._lone(batch, sweep, awaited)):
            try:
                written = self._write(batch, sweep)
            except Exception as error:
                self._fail(error)
                return
            self._apply(batch, written)
            # What the batch released may want the next commit at once (a page, say):
            # start it from the loop, not by recursion.
            self.loop.call_soon(self.kick)
            return
        future = self.loop.run_in_executor(self._writer, self._write, batch, sweep)
        self._in_flight = future
        future.add_done_callback(lambda done: self._done(batch, done))

    def _lone(self, batch: Batch, sweep: bool, awaited: bool) -> bool:
        """A small batch after a small one, a reply waiting for it (one caller, nobody else
        arriving), for a store whose commit is a local fsync that has been quick: written
        on the loop's thread, it is answered without two thread hand-offs. Larger batches
        mean others are arriving meanwhile: the writer thread takes them, and the loop
        keeps serving while the disk flushes."""
        return (
            self.store.lone_writes_on_loop
            and not self._slow_disk
            and awaited
            and not sweep
            and not batch.page_requests
        )

    def _write(self, batch: Batch, sweep: bool) -> Written:
        """On the writer thread: the batch, its pages, and a shared store's sweep (each
        write renews a shared store's lease, so an empty batch is written as a renewal)."""
        seconds = synced = 0.0
        coalesced: dict[int, int] = {}
        if batch.operations or (self._shared is not None and not sweep):
            started = time.perf_counter()
            self.store.write(batch.operations)
            seconds, synced = time.perf_counter() - started, self.store.sync_seconds
            if self._shared is not None:
                coalesced = self._shared.coalesced
        pages = []
        if batch.page_requests:
            assert isinstance(self.store, PagingStore)
            pages = read_pages(self.store, batch.page_requests)
        claimed = self._shared.sweep() if sweep and self._shared is not None else None
        return Written(pages, seconds, synced, claimed, coalesced)

    def _commit_at(self, due: float) -> None:
        """Commit at ``due`` (loop time), or at the earlier time already set."""
        if self._delayed is not None:
            if self._delayed_until <= due:
                return
            self._delayed.cancel()
        self._delayed = self.loop.call_at(due, self._after_delay)
        self._delayed_until = due

    def _after_delay(self) -> None:
        self._delayed = None
        self.kick()

    def _done(self, batch: Batch, future: asyncio.Future[Written]) -> None:
        self._in_flight = None
        error = future.exception()
        if error is not None:
            self._fail(error)
            return
        self._apply(batch, future.result())
        self.kick()

    def _fail(self, error: BaseException) -> None:
        """The store failed: every waiter hears so, and the server stops."""
        log.critical(
            "%s",
            error
            if isinstance(error, StoreUnavailable)
            else f"writing to {self.store.describe()} failed: {error}",
        )
        self._failed = True
        while self._waiting:
            self._waiting.popleft()[1](False)
        self.on_failure(error)

    def _apply(self, batch: Batch, written: Written) -> None:
        """The batch is on disk: release what waited for it."""
        if batch.operations:
            self._slow_disk = written.seconds > LONE_WRITE_SECONDS
            self.commits += 1
            self.batch_operations.observe(len(batch.operations))
            self.commit_seconds.observe(written.seconds)
            self.sync_seconds.observe(written.synced)
        if self._shared is not None:
            self.broker.lease_deadline = self._shared.lease_valid_until()
        self.broker.apply_batch(batch, written.pages, written.coalesced)
        if written.claimed is not None:
            self._took_over(written.claimed)
        while self._waiting and self._waiting[0][0] <= batch.number:
            self._waiting.popleft()[1](True)

    def _took_over(self, claimed: Claimed) -> None:
        """Serve what a sweep took over; sweep again at once while more is left."""
        if claimed.jobs or claimed.schedules:
            self.taken_over += len(claimed.jobs)
            take_over(self.broker, claimed)
            self.broker.flush()
        if claimed.more:
            self._sweep_wanted = True
        elif self._shared is not None and self._sweep_timer is None and not self._closing:
            self._sweep_timer = self.loop.call_later(self._shared.sweep_seconds, self._sweep_now)

    def _stop_new_work(self) -> None:
        """No write or sweep starts from now on; timers are cancelled."""
        self._closing = True
        for timer in (self._delayed, self._sweep_timer):
            if timer is not None:
                timer.cancel()

    def abandon(self) -> None:
        """The store failed: release it without writing what is left (it cannot be)."""
        self._stop_new_work()
        self._writer.shutdown(wait=True)
        self.store.close()

    async def close(self) -> None:
        """Write what is still journaled, then release the store."""
        self._stop_new_work()
        while self._in_flight is not None:
            await asyncio.shield(self._in_flight)
            # A finished write's future is done before its callback (_done, which clears
            # _in_flight) has run; awaiting a done future does not yield, so without this
            # the loop would spin here forever instead of letting _done run.
            await asyncio.sleep(0)
        if self.broker.journal.ops:
            batch = self.broker.take_batch()
            await self.loop.run_in_executor(self._writer, self.store.write, batch.operations)
        self._writer.shutdown()
        self.store.close()
