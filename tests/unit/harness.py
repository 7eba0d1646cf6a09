"""Drive the broker core without sockets or an event loop: fake peers and a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from broker.core.admin_commands import AdminCommands
from broker.core.broker import Broker
from broker.core.journal import Journal
from broker.core.model import Session
from broker.core.paging import read_pages
from broker.core.restore import restore
from broker.core.settings import BrokerSettings
from broker.protocol.packets import MAGIC_REQ, Packet, PacketType
from broker.protocol.reader import PacketReader
from broker.store.base import PagingStore, SharedStore, Store, StoredState
from broker.store.sqlite import SQLiteStore

T = PacketType


def restart(old: Harness, store_path: Path, **settings: Any) -> Harness:
    """Close ``old``'s store and start a fresh broker on the same SQLite file."""
    assert old.store is not None
    old.store.close()
    return Harness(store=SQLiteStore(store_path), now=old.now, **settings)


class FakeTimer:
    def __init__(self, due: float, callback: Callable[[], None]) -> None:
        self.due = due
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Harness:
    """A broker with a manual clock; ``advance`` fires the timers that fall due."""

    def __init__(
        self,
        *,
        store: Store | None = None,
        now: float = 1_000_000.0,
        window: int = 0,
        **settings: Any,
    ) -> None:
        self.now = now
        self.timers: list[FakeTimer] = []
        self.store = store
        journal = None
        state = StoredState()
        if store is not None:
            state = store.load(window)
            journal = Journal.resuming(state)
        self.broker = Broker(
            BrokerSettings(handle_prefix=b"H:test", **settings),
            call_later=self.call_later,
            clock=lambda: self.now,
            journal=journal,
            paging_store=store if isinstance(store, PagingStore) else None,
            window=window,
        )
        restore(self.broker, state)
        self.shutdowns: list[bool] = []
        self.admin = AdminCommands(
            self.broker, verbose="ERROR", request_shutdown=self.shutdowns.append
        )
        self._next_fd = 10

    def commit(self) -> None:
        """Write a batch and read its pages: the committer's two calls, on this thread."""
        assert self.store is not None
        batch = self.broker.take_batch()
        self.store.write(batch.operations)
        pages = []
        if batch.page_requests:
            assert isinstance(self.store, PagingStore)
            pages = read_pages(self.store, batch.page_requests)
        coalesced = self.store.coalesced if isinstance(self.store, SharedStore) else {}
        self.broker.apply_batch(batch, pages, coalesced)

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.now + delay, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for timer in sorted(self.timers, key=lambda t: t.due):
            if timer.due <= self.now and not timer.cancelled:
                timer.cancelled = True
                timer.callback()
        self.broker.flush()

    def peer(self, host: str = "127.0.0.1") -> Peer:
        self._next_fd += 1
        return Peer(self, self._next_fd, host)


class Peer:
    """One fake connection: send packets in, read decoded packets out."""

    def __init__(self, harness: Harness, fd: int, host: str) -> None:
        self.harness = harness
        self.reader = PacketReader(accept_text=False)
        self.raw = bytearray()
        self.session: Session = harness.broker.connect(self._write, fd, host)

    def _write(self, data: bytes) -> None:
        self.raw += data
        self.reader.feed(data)

    def send(self, packet_type: PacketType, *args: bytes) -> None:
        self.harness.broker.handle_packet(self.session, Packet(MAGIC_REQ, packet_type, args))
        self.harness.broker.flush()

    def admin(self, line: bytes) -> bytes:
        reply = self.harness.admin.run(self.session, line)
        self.harness.broker.flush()
        return reply

    def received(self) -> list[tuple[PacketType, tuple[bytes, ...]]]:
        packets = []
        while (event := self.reader.next_event()) is not None:
            assert isinstance(event, Packet)
            packets.append((event.type, event.args))
        return packets

    def disconnect(self) -> None:
        self.harness.broker.disconnect(self.session)
        self.harness.broker.flush()

    # conveniences for the common exchanges
    def submit(
        self,
        function: bytes,
        data: bytes = b"",
        unique: bytes = b"",
        kind: PacketType = T.SUBMIT_JOB_BG,
    ) -> bytes:
        self.send(kind, function, unique, data)
        (packet_type, args), *_ = self.received()
        assert packet_type is T.JOB_CREATED, (packet_type, args)
        return args[0]

    def grab(self) -> tuple[bytes, ...] | None:
        self.send(T.GRAB_JOB_UNIQ)
        packets = self.received()
        assert len(packets) == 1, packets
        packet_type, args = packets[0]
        if packet_type is T.NO_JOB:
            return None
        assert packet_type is T.JOB_ASSIGN_UNIQ
        return args
