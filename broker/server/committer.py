"""Group commit: one store transaction per event-loop turn, written off the loop.

At the end of a turn the server calls ``kick()``. If the journal holds
operations and no commit is running, they go to a single writer thread as one
batch. When it is on disk the broker releases the replies that waited for it
(JOB_CREATED of stored jobs) and the next batch, which kept filling meanwhile,
goes out. So the commit rate adapts to the load: one fsync covers whatever
arrived while the previous one ran.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from broker.core.broker import Broker
from broker.store.base import Store

log = logging.getLogger("spoolgear.store")


class Committer:
    def __init__(self, broker: Broker, store: Store, *,
                 on_failure: Callable[[BaseException], None]) -> None:
        self.broker = broker
        self.store = store
        self.on_failure = on_failure
        self.loop = asyncio.get_running_loop()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spoolgear-store")
        self._in_flight: asyncio.Future[None] | None = None

    def kick(self) -> None:
        journal = self.broker.journal
        if self._in_flight is not None or journal is None or not journal.ops:
            return
        number, batch = self.broker.take_batch()
        future = self.loop.run_in_executor(self._writer, self.store.write, batch)
        self._in_flight = future
        future.add_done_callback(lambda done: self._done(number, done))

    def _done(self, number: int, future: asyncio.Future[None]) -> None:
        self._in_flight = None
        error = future.exception()
        if error is not None:
            log.critical("writing to %s failed: %s", self.store.describe(), error)
            self.on_failure(error)
            return
        self.broker.batch_committed(number)
        self.broker.flush()
        self.kick()

    async def close(self) -> None:
        """Write what is still journaled, then release the store."""
        while self._in_flight is not None:
            await asyncio.shield(self._in_flight)
        journal = self.broker.journal
        if journal is not None and journal.ops:
            _, batch = self.broker.take_batch()
            await self.loop.run_in_executor(self._writer, self.store.write, batch)
        self._writer.shutdown()
        self.store.close()
