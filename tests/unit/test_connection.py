"""The connection protocol in-process, with a stand-in transport: what a peer's bytes
become and what it is sent, turn by turn, without sockets or a subprocess."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from broker.config import ServerConfig
from broker.protocol.packets import MAGIC_REQ, PacketType, encode_packet
from broker.protocol.reader import PacketReader
from broker.server.connection import GearmanConnection
from broker.server.server import BrokerServer
from broker.server.uwsgi_listener import REFUSED, SPOOLED, SpoolConnection
from broker.store.base import MemoryStore, Store, StoredState
from broker.store.sqlite import SQLiteStore

T = PacketType


class FakeTransport(asyncio.Transport):
    """Records what is written; ``backlog`` stands for replies the peer has not read."""

    def __init__(self, connection: GearmanConnection | SpoolConnection) -> None:
        super().__init__()
        self.connection = connection
        self.written = bytearray()
        self.backlog = 0
        self.high_water = 1 << 30
        self.reading = True
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data
        self.backlog += len(data)
        if self.backlog > self.high_water:
            self.connection.pause_writing()

    def peer_reads_everything(self) -> None:
        self.backlog = 0
        self.connection.resume_writing()

    def get_write_buffer_size(self) -> int:
        return self.backlog

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high_water = high if high is not None else self.high_water

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5555) if name == "peername" else default

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.connection.connection_lost(None)

    def abort(self) -> None:
        self.close()

    def packets(self) -> list[tuple[PacketType, tuple[bytes, ...]]]:
        reader = PacketReader(accept_text=False)
        reader.feed(bytes(self.written))
        self.written.clear()
        found = []
        while (event := reader.next_event()) is not None:
            found.append((event.type, event.args))  # type: ignore[union-attr]
        return found


def run(
    test: Callable[[BrokerServer], Awaitable[None]], store: Store | None = None, **options: Any
) -> None:
    async def main() -> None:
        config = ServerConfig(store="memory:", **options)
        server = BrokerServer(config, store or MemoryStore(), StoredState())
        try:
            await test(server)
        finally:
            await server.committer.close()

    asyncio.run(main())


def connect(server: BrokerServer) -> tuple[GearmanConnection, FakeTransport]:
    connection = GearmanConnection(server.context)
    transport = FakeTransport(connection)
    connection.connection_made(transport)
    return connection, transport


def packet(kind: PacketType, *args: bytes) -> bytes:
    return encode_packet(kind, *args, magic=MAGIC_REQ)


def end_turn(server: BrokerServer) -> None:
    server._end_turn()


def test_pipelined_packets_in_one_read_get_their_replies_in_one_write() -> None:
    async def test(server: BrokerServer) -> None:
        client, wire = connect(server)
        client.data_received(b"".join(packet(T.ECHO_REQ, b"%d" % n) for n in range(5)))
        end_turn(server)
        assert wire.packets() == [(T.ECHO_RES, (b"%d" % n,)) for n in range(5)]

    run(test)


def test_a_packet_split_byte_by_byte_is_read_once_whole() -> None:
    async def test(server: BrokerServer) -> None:
        client, wire = connect(server)
        for byte in packet(T.SUBMIT_JOB_BG, b"f", b"", b"payload"):
            client.data_received(bytes([byte]))
            assert client.partial_since is not None or wire.written == b""
        end_turn(server)
        ((kind, (handle,)),) = wire.packets()
        assert kind is T.JOB_CREATED and handle.startswith(b"H:")
        assert client.partial_since is None and server.context.buffered == 0

    run(test)


def test_a_peer_that_does_not_read_is_paused_then_resumed() -> None:
    async def test(server: BrokerServer) -> None:
        client, wire = connect(server)
        client.data_received(packet(T.ECHO_REQ, b"x" * 100) * 10)
        end_turn(server)
        assert not wire.reading, "replies past --max-output-buffer stop the reading"
        wire.peer_reads_everything()
        assert wire.reading

    run(test, max_output_buffer=512)


def test_a_protocol_error_gets_an_error_packet_and_the_connection_carries_on() -> None:
    async def test(server: BrokerServer) -> None:
        client, wire = connect(server)
        client.data_received(packet(T.SUBMIT_JOB, b"f") + packet(T.ECHO_REQ, b"after"))
        end_turn(server)
        replies = wire.packets()
        assert replies[0][0] is T.ERROR and replies[0][1][0] == b"INVALID_PACKET"
        assert replies[1] == (T.ECHO_RES, (b"after",))
        assert not wire.closed

    run(test)


def test_bad_magic_closes_the_connection() -> None:
    async def test(server: BrokerServer) -> None:
        client, wire = connect(server)
        client.data_received(b"\x00XYZ" + bytes(8))
        assert wire.closed and client not in server.context.connections

    run(test)


def test_a_worker_that_disconnects_mid_job_hands_it_to_the_next() -> None:
    async def test(server: BrokerServer) -> None:
        client, client_wire = connect(server)
        first, first_wire = connect(server)
        second, second_wire = connect(server)
        client.data_received(packet(T.SUBMIT_JOB, b"f", b"", b"work"))
        for worker in (first, second):
            worker.data_received(packet(T.CAN_DO, b"f"))
        first.data_received(packet(T.GRAB_JOB))
        end_turn(server)
        ((kind, (handle, _, data)),) = [p for p in first_wire.packets() if p[0] is T.JOB_ASSIGN]
        assert (kind, data) == (T.JOB_ASSIGN, b"work")
        first_wire.close()  # gone mid-job
        second.data_received(packet(T.GRAB_JOB))
        end_turn(server)
        assigned = [p for p in second_wire.packets() if p[0] is T.JOB_ASSIGN]
        assert assigned == [(T.JOB_ASSIGN, (handle, b"f", b"work"))]
        second.data_received(packet(T.WORK_COMPLETE, handle, b"done"))
        end_turn(server)
        assert (T.WORK_COMPLETE, (handle, b"done")) in client_wire.packets()

    run(test)


async def committed(server: BrokerServer) -> None:
    """Let the committer's writer thread finish what is in flight."""
    for _ in range(200):
        await asyncio.sleep(0.01)
        if server.committer._in_flight is None and not server.broker.batch_waiting():
            return


def test_job_created_for_a_stored_job_waits_for_its_commit(tmp_path: Path) -> None:
    async def test(server: BrokerServer) -> None:
        client, wire = connect(server)
        client.data_received(packet(T.SUBMIT_JOB_BG, b"f", b"", b"kept"))
        client.data_received(packet(T.ECHO_REQ, b"after"))
        end_turn(server)  # flushes, and hands the batch to the writer thread
        assert wire.packets() == []  # neither the JOB_CREATED nor what followed it
        await committed(server)
        assert [kind for kind, _ in wire.packets()] == [T.JOB_CREATED, T.ECHO_RES]

    run(test, SQLiteStore(tmp_path / "jobs.db"))


def spool_packet(function: bytes) -> bytes:
    body = b"".join(len(part).to_bytes(2, "little") + part for part in (b"ud_spool_func", function))
    return bytes([17]) + len(body).to_bytes(2, "little") + bytes([0]) + body


def test_the_uwsgi_door_answers_once_the_job_is_stored_and_refuses_a_full_queue(
    tmp_path: Path,
) -> None:
    async def test(server: BrokerServer) -> None:
        door = SpoolConnection(server.context)
        wire = FakeTransport(door)
        door.connection_made(wire)
        door.data_received(spool_packet(b"mail"))
        assert wire.written == b""  # not durable yet
        end_turn(server)
        await committed(server)
        assert bytes(wire.written) == SPOOLED
        assert server.broker.functions.by_name[b"mail"].queued == 1

        server.broker.functions.by_name[b"mail"].max_queue = [1, 1, 1]
        full = SpoolConnection(server.context)
        full_wire = FakeTransport(full)
        full.connection_made(full_wire)
        full.data_received(spool_packet(b"mail"))
        assert bytes(full_wire.written) == REFUSED  # at once: nothing to wait for

    run(test, SQLiteStore(tmp_path / "jobs.db"))


def test_closing_right_after_a_write_finished_lets_its_callback_run() -> None:
    """The write's future is done but its callback (which clears the write in flight) has
    not run yet: closing must yield to it rather than spin (a broker hung at shutdown at
    100% CPU so). Without the fix this test never returns (pytest-timeout fails it)."""

    async def test(server: BrokerServer) -> None:
        committer = server.committer
        written: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        written.add_done_callback(lambda _: setattr(committer, "_in_flight", None))
        committer._in_flight = written
        written.set_result(([], 0.0, 0.0))  # done; the callback waits for the next turn
        await committer.close()  # in this same turn, as the server's shutdown does

    run(test)
