"""The same packet scenarios against Debian's gearmand 1.1.20 and spoolgear: same bytes back.

Each scenario drives raw sockets and returns a transcript of everything it
received. Deliberate differences (section 9 of the protocol reference: no
trailing NUL on WORK_FAIL, priority across functions, ...) are not replayed here;
they have their own unit tests.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from broker.protocol.packets import PacketType, encode_packet
from tests.helpers import RawConnection, run_broker, run_gearmand

T = PacketType
Transcript = list[bytes]


class Recorder:
    def __init__(self, port: int) -> None:
        self.port = port
        self.transcript: Transcript = []
        self.connections: list[RawConnection] = []

    def connect(self) -> RawConnection:
        conn = RawConnection(self.port)
        self.connections.append(conn)
        return conn

    def send(
        self, conn: RawConnection, packet_type: PacketType, *args: bytes, replies: int = 0
    ) -> None:
        conn.send(packet_type, *args)
        self.expect(conn, replies)

    def expect(self, conn: RawConnection, replies: int) -> None:
        for _ in range(replies):
            packet = conn.packet()
            self.transcript.append(encode_packet(packet.type, *packet.args))

    def admin(self, conn: RawConnection, line: bytes, *, table: bool = False) -> None:
        conn.sock.sendall(line)
        data = b""
        conn.sock.settimeout(5)
        while not (data.endswith(b".\n") if table else data.endswith(b"\n")):
            data += conn.sock.recv(65536)
        lines = data.split(b"\n")
        self.transcript.append(b"\n".join(sorted(lines)) if table else data)

    def wait_for_status(self, conn: RawConnection, line: bytes) -> None:
        """Poll ``status`` (unrecorded) until it shows ``line``: lets a disconnect land."""
        for _ in range(100):
            if line in conn.admin(b"status\n", settle=0.01):
                return
        raise AssertionError(f"status never showed {line!r}")

    def close(self) -> None:
        quiet = [conn.quiet(0.05) for conn in self.connections]
        for conn in self.connections:
            conn.close()
        assert all(quiet), "unexpected extra bytes"


def minimal_session(r: Recorder) -> None:
    worker, client = r.connect(), r.connect()
    r.send(worker, T.CAN_DO, b"reverse")
    r.send(worker, T.GRAB_JOB, replies=1)
    r.send(worker, T.PRE_SLEEP)
    r.send(client, T.SUBMIT_JOB, b"reverse", b"", b"test", replies=1)
    r.expect(worker, 1)
    r.send(worker, T.GRAB_JOB, replies=1)
    r.send(worker, T.WORK_DATA, b"H:%s:1" % HOST, b"partial")
    r.expect(client, 1)
    r.send(worker, T.WORK_STATUS, b"H:%s:1" % HOST, b"1", b"2")
    r.expect(client, 1)
    r.send(worker, T.WORK_COMPLETE, b"H:%s:1" % HOST, b"tset")
    r.expect(client, 1)
    r.send(client, T.GET_STATUS, b"H:%s:1" % HOST, replies=1)


def coalescing(r: Recorder) -> None:
    client, other, worker = r.connect(), r.connect(), r.connect()
    r.send(client, T.SUBMIT_JOB_BG, b"f", b"same", b"one", replies=1)
    r.send(other, T.SUBMIT_JOB, b"f", b"same", b"two", replies=1)
    r.send(client, T.SUBMIT_JOB_BG, b"f", b"-", b"payload", replies=1)
    r.send(client, T.SUBMIT_JOB_BG, b"f", b"-", b"payload", replies=1)
    r.send(client, T.SUBMIT_JOB_BG, b"f", b"", b"x", replies=1)
    r.send(client, T.SUBMIT_JOB_BG, b"f", b"", b"x", replies=1)
    r.send(client, T.SUBMIT_JOB_BG, b"g", b"same", b"other function", replies=1)
    r.admin(client, b"show unique jobs\n", table=True)
    r.send(client, T.GET_STATUS_UNIQUE, b"same", replies=1)
    r.send(client, T.GET_STATUS_UNIQUE, b"unknown", replies=1)
    r.send(worker, T.CAN_DO, b"f")
    r.send(worker, T.GRAB_JOB_UNIQ, replies=1)
    r.send(worker, T.WORK_COMPLETE, b"H:%s:1" % HOST, b"r")
    r.expect(other, 1)


def priorities_in_one_function(r: Recorder) -> None:
    client, worker = r.connect(), r.connect()
    r.send(client, T.SUBMIT_JOB_LOW_BG, b"p", b"", b"low", replies=1)
    r.send(client, T.SUBMIT_JOB_BG, b"p", b"", b"normal", replies=1)
    r.send(client, T.SUBMIT_JOB_HIGH_BG, b"p", b"", b"high", replies=1)
    r.admin(client, b"prioritystatus\n", table=True)
    r.send(worker, T.CAN_DO, b"p")
    for _ in range(4):
        r.send(worker, T.GRAB_JOB, replies=1)


def errors(r: Recorder) -> None:
    conn = r.connect()
    conn.send_raw(encode_packet(T.ECHO_REQ, b"x"))  # response magic on a request
    r.expect(conn, 1)
    for kind in (T.NOOP, T.ALL_YOURS, T.UNUSED, T.NO_JOB):
        r.send(conn, kind, replies=1)
    r.send(conn, T.SUBMIT_JOB_BG, b"f", b"u" * 65, b"", replies=1)
    r.send(conn, T.WORK_COMPLETE, b"H:nope:1", b"", replies=1)
    r.send(conn, T.WORK_FAIL, b"H:nope:1", replies=1)
    r.send(conn, T.WORK_STATUS, b"H:nope:1", b"1", b"2", replies=1)
    r.send(conn, T.WORK_DATA, b"H:nope:1", b"", replies=1)
    r.send(conn, T.WORK_WARNING, b"H:nope:1", b"", replies=1)
    r.send(conn, T.WORK_EXCEPTION, b"H:nope:1", b"", replies=1)
    r.send(conn, T.OPTION_REQ, b"nonsense", replies=1)
    r.send(conn, T.OPTION_REQ, b"EXCEPTIONS", replies=1)
    r.send(conn, T.ECHO_REQ, b"", replies=1)
    r.send(conn, T.ECHO_REQ, b"with\0nul", replies=1)
    r.send(conn, T.GET_STATUS, b"H:nope:1", replies=1)


def maxqueue(r: Recorder) -> None:
    conn = r.connect()
    for _ in range(3):
        r.send(conn, T.SUBMIT_JOB_BG, b"mq", b"", b"", replies=1)
    r.admin(conn, b"maxqueue mq 10 5 1\n")
    r.send(conn, T.SUBMIT_JOB_HIGH_BG, b"mq", b"", b"", replies=1)
    r.send(conn, T.SUBMIT_JOB_BG, b"mq", b"", b"", replies=1)
    r.send(conn, T.SUBMIT_JOB_BG, b"mq", b"", b"", replies=1)
    r.send(conn, T.SUBMIT_JOB_LOW, b"mq", b"", b"", replies=1)
    r.admin(conn, b"maxqueue mq\n")
    r.send(conn, T.SUBMIT_JOB_LOW_BG, b"mq", b"", b"", replies=1)
    r.admin(conn, b"status\n", table=True)


def admin_commands(r: Recorder) -> None:
    conn, worker = r.connect(), r.connect()
    r.send(conn, T.SUBMIT_JOB_BG, b"a", b"ua", b"", replies=1)
    r.send(conn, T.SUBMIT_JOB_HIGH_BG, b"b", b"ub", b"", replies=1)
    r.send(worker, T.CAN_DO, b"a")
    r.send(worker, T.GRAB_JOB, replies=1)
    for line in (
        b"status\n",
        b"prioritystatus\n",
        b"show jobs\n",
        b"show unique jobs\n",
        b"STATUS extra words\n",
    ):
        r.admin(conn, line, table=True)
    # (what follows a cancel differs on purpose: gearmand cancels queued jobs lazily, so a
    # second cancel answers OK again and `status` still counts the job; spoolgear removes it)
    for line in (
        b"cancel job H:%s:2\n" % HOST,
        b"cancel x y\n",
        b"cancel\n",
        b"show\n",
        b"show foo\n",
        b"bogus\n",
        b"\n",
        b" status\n",
        b"create function made\r\n",
        b"create\n",
        b"drop function\n",
        b"drop function missing\n",
        b"drop function a\n",
        b"maxqueue\n",
        b"maxqueue a 1 2\n",
        b"verbose\n",
    ):
        r.admin(conn, line)


def requeue_on_disconnect(r: Recorder) -> None:
    client, first, second = r.connect(), r.connect(), r.connect()
    r.send(client, T.SUBMIT_JOB, b"f", b"", b"x", replies=1)
    r.send(first, T.CAN_DO, b"f")
    r.send(first, T.GRAB_JOB, replies=1)
    first.close()
    r.connections.remove(first)
    r.wait_for_status(client, b"f\t1\t0\t0\n")
    r.send(second, T.CAN_DO, b"f")
    r.send(second, T.GRAB_JOB, replies=1)
    r.admin(client, b"show jobs\n", table=True)
    r.send(second, T.WORK_COMPLETE, b"H:%s:1" % HOST, b"done")
    r.expect(client, 1)


def reduce_and_grab_all(r: Recorder) -> None:
    client, worker = r.connect(), r.connect()
    r.send(client, T.SUBMIT_REDUCE_JOB_BACKGROUND, b"f", b"u1", b"red", b"", b"d", replies=1)
    r.send(client, T.SUBMIT_JOB_BG, b"f", b"u2", b"plain", replies=1)
    r.send(worker, T.CAN_DO, b"f")
    r.send(worker, T.GRAB_JOB_ALL, replies=1)
    r.send(worker, T.GRAB_JOB_ALL, replies=1)
    r.send(worker, T.GRAB_JOB_ALL, replies=1)


def text_and_binary_mixed(r: Recorder) -> None:
    conn = r.connect()
    conn.send_raw(b"version\n" + encode_packet(T.ECHO_REQ, b"e", magic=b"\0REQ"))
    line = conn.sock.recv(len(b"OK 1.1.20")).split(b"+")[0]
    r.transcript.append(line)
    conn.reader.feed(conn.sock.recv(65536).split(b"\n", 1)[1])
    r.expect(conn, 1)


HOST = b""
SCENARIOS: list[Callable[[Recorder], None]] = [
    minimal_session,
    coalescing,
    priorities_in_one_function,
    errors,
    maxqueue,
    admin_commands,
    requeue_on_disconnect,
    reduce_and_grab_all,
    text_and_binary_mixed,
]


def replay(port: int, scenario: Callable[[Recorder], None]) -> Transcript:
    recorder = Recorder(port)
    try:
        scenario(recorder)
    finally:
        recorder.close()
    return recorder.transcript


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_same_bytes_as_gearmand(scenario: Callable[[Recorder], None]) -> None:
    import socket

    global HOST
    HOST = socket.gethostname().encode()
    with run_gearmand() as gearmand_port:
        expected = replay(gearmand_port, scenario)
    # gearmand's default log level, which its `verbose` admin command reports.
    with run_broker("--verbose", "ERROR") as broker:
        actual = replay(broker.port, scenario)
    assert actual == expected
