"""Hostile and broken input on both doors: an answer or a clean close, never a traceback.

``run_broker`` fails a test whose broker logged a traceback; each test also checks the
broker still serves a well-behaved client afterwards.
"""

from __future__ import annotations

import signal
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from broker.admin import AdminClient
from broker.client import Client, JobRequest
from broker.errors import BrokerError
from broker.protocol.packets import MAGIC_REQ, PacketType, encode_packet
from broker.protocol.uwsgi import encode_spool
from broker.uwsgi_client import SPOOLED, connect
from broker.worker import Worker
from tests.helpers import RawConnection, RunningBroker, burst_drain, run_broker
from tests.metrics import metrics_address, scrape, value

T = PacketType
HUGE = b"9" * 400  # past any float, and past Python's 4300-digit int parsing when 5000
ENORMOUS = b"9" * 5000


def still_serves(broker: RunningBroker) -> None:
    with Client([broker.address]) as client:
        client.submit_background("after", b"fine")
    assert burst_drain(broker.address, "after") == [("after", b"fine")]


@pytest.fixture
def sqlite_broker(tmp_path: Path) -> RunningBroker:
    with run_broker(
        "--store",
        f"sqlite:{tmp_path / 'jobs.db'}",
        "--queue-window",
        "2",
        "--uwsgi-socket",
        "127.0.0.1:0",
    ) as broker:
        yield broker


def test_numbers_of_any_length_on_the_gearman_port(sqlite_broker: RunningBroker) -> None:
    with RawConnection(sqlite_broker.port) as raw:
        for epoch in (HUGE, ENORMOUS):
            raw.send(T.SUBMIT_JOB_EPOCH, b"later", b"", epoch, b"x")
            assert raw.packet().type is T.JOB_CREATED  # gearmand takes any epoch too
        raw.send(T.CAN_DO_TIMEOUT, b"slow", HUGE)
        for handle in (b"H:x:" + HUGE, b"H:x:" + b"1" * 19, sqlite_broker_prefix(raw) + HUGE):
            raw.send(T.GET_STATUS, handle)
            status = raw.packet()
            assert status.type is T.STATUS_RES and status.args[1] == b"0"
        raw.send(T.SUBMIT_JOB_SCHED, b"tick", b"t", b"@every 60", b"", b"", b"", b"", b"")
        assert raw.packet().type is T.JOB_CREATED
        raw.send(T.SUBMIT_JOB_SCHED, b"tick", b"t", b"@every " + HUGE, b"", b"", b"", b"", b"")
        assert raw.packet().args[0] == b"INVALID_ARGUMENTS"
    with AdminClient(sqlite_broker.address) as admin:
        (schedule,) = admin.show_schedules()
        assert schedule.spec == "@every 60", "a refused change leaves the schedule running"
        with RawConnection(sqlite_broker.port) as raw:
            assert raw.admin(b"cancel job H:x:" + HUGE + b"\n").startswith(b"ERR")
    still_serves(sqlite_broker)


def sqlite_broker_prefix(raw: RawConnection) -> bytes:
    """This broker's handle prefix, from a job it creates."""
    raw.send(T.SUBMIT_JOB_BG, b"probe", b"", b"")
    handle = raw.packet().args[0]
    return handle[: handle.rindex(b":") + 1]


@pytest.mark.parametrize(
    "pairs",
    [
        [(b"at", HUGE)],
        [(b"at", ENORMOUS)],
        [(b"priority", HUGE)],
        [(b"spooler", b"127.0.0.1:10001")],
    ],
)
def test_spool_packets_with_unusable_values_are_refused(
    sqlite_broker: RunningBroker, pairs: list[tuple[bytes, bytes]]
) -> None:
    with connect(sqlite_broker.uwsgi[0], 5.0) as sock:
        sock.sendall(encode_spool(pairs))
        assert sock.recv(4) == b"\xff\x00\x00\x00"
    still_serves(sqlite_broker)


def test_a_valid_spool_packet_followed_by_more_bytes_gets_its_answer_and_a_clean_close(
    sqlite_broker: RunningBroker,
) -> None:
    """Closing with the extra bytes unread would reset the connection, and a sender that
    lost the answer to the reset would send the job again."""
    for _ in range(20):
        with connect(sqlite_broker.uwsgi[0], 5.0) as sock:
            sock.sendall(encode_spool([(b"ud_spool_func", b"mail")]) + b"trailing" * 1000)
            received = b""
            while chunk := sock.recv(100):  # a reset raises here
                received += chunk
        assert received == SPOOLED
    assert len(burst_drain(sqlite_broker.address, "mail")) == 20
    still_serves(sqlite_broker)


def test_peers_that_reset_at_once_leave_no_trace(sqlite_broker: RunningBroker) -> None:
    for address in (
        ("127.0.0.1", sqlite_broker.port),
        tuple(sqlite_broker.uwsgi[0].rsplit(":", 1)),
    ):
        for _ in range(200):
            sock = socket.create_connection((address[0], int(address[1])))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # RST, possibly before the broker has set the connection up
    still_serves(sqlite_broker)


def test_a_started_packet_that_never_completes_is_cut_off_and_idle_peers_stay() -> None:
    with (
        run_broker("--packet-timeout", "1") as broker,
        RawConnection(broker.port) as idle,
        RawConnection(broker.port) as stalled,
    ):
        stalled.send_raw(b"\x00REQ\x00\x00\x00\x07\x00\x00\x10\x00partial")  # 4 KiB declared
        assert stalled.closed_by_peer(wait=10)
        idle.send(T.ECHO_REQ, b"still here")
        assert idle.packet().args == (b"still here",)
        still_serves(broker)


def test_a_client_that_never_reads_its_results_is_cut_off(tmp_path: Path) -> None:
    """200 results of 100 KiB for a client that reads none: the broker stops it at
    --max-unread-output instead of holding 20 MB, and the worker carries on."""
    with (
        run_broker("--max-output-buffer", "65536", "--max-unread-output", "1000000") as broker,
        RawConnection(broker.port) as greedy,
    ):
        for number in range(200):
            greedy.send(T.SUBMIT_JOB, b"big", b"", b"%d" % number)
        with Client([broker.address]) as probe:
            probe.submit_background("marker", b"")
        served = []

        def big_result(job: object) -> bytes:
            served.append(job)
            return b"r" * 100_000

        with Worker([broker.address]) as worker:
            worker.register("big", big_result)
            worker.work(burst=True)
        received = 0
        greedy.sock.settimeout(10)
        try:
            while chunk := greedy.sock.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
        assert received < 150 * 100_000, "cut off, not handed the 20 MB it never read"
        assert 0 < len(served) <= 200
        resident = int(Path(f"/proc/{broker.process.pid}/statm").read_text().split()[1]) * 4096
        assert resident < 100 << 20
        still_serves(broker)


def test_a_worker_with_20000_functions_and_1000_priorities_does_not_freeze_the_broker() -> None:
    """Each GRAB used to cost functions x priority levels (4 s here): five froze every
    client for 20 s. Another client's round trip must stay served meanwhile."""
    with run_broker("--uwsgi-socket", "127.0.0.1:0") as broker:
        for priority in range(1000):  # a queue at every spool priority level
            with connect(broker.uwsgi[0], 5.0) as sock:
                sock.sendall(
                    encode_spool([(b"ud_spool_func", b"spooled"), (b"priority", b"%d" % priority)])
                )
                assert sock.recv(4) == SPOOLED
        with (
            RawConnection(broker.port) as heavy,
            Worker([broker.address]) as honest,
            Client([broker.address], timeout=10) as client,
        ):
            heavy.send_raw(
                b"".join(
                    encode_packet(T.CAN_DO, b"fn%d" % n, magic=MAGIC_REQ) for n in range(20_000)
                )
            )
            heavy.send_raw(encode_packet(T.GRAB_JOB, magic=MAGIC_REQ) * 50)
            honest.register("echo", lambda job: job.data)
            serving = threading.Thread(target=honest.work, kwargs={"max_jobs": 1})
            serving.start()
            assert client.submit("echo", b"round trip").data == b"round trip"
            serving.join(10)
            assert [heavy.packet().type for _ in range(50)] == [T.NO_JOB] * 50
        still_serves(broker)


def test_an_answer_sent_while_the_broker_was_paused_beats_the_job_timeout() -> None:
    """SIGSTOP past a job's CAN_DO_TIMEOUT, the worker answers meanwhile, SIGCONT: the
    answer counts and the job does not run again."""
    with (
        run_broker("--job-retries", "5") as broker,
        RawConnection(broker.port) as worker,
        RawConnection(broker.port) as client,
        RawConnection(broker.port) as other,
    ):
        worker.send(T.CAN_DO_TIMEOUT, b"slow", b"1000")
        client.send(T.SUBMIT_JOB, b"slow", b"", b"data")
        handle = client.packet().args[0]
        worker.send(T.GRAB_JOB)
        assert worker.packet().type is T.JOB_ASSIGN
        flooding = threading.Event()
        flood = threading.Thread(target=keep_busy, args=(broker.port, flooding))
        flood.start()  # so the pause lands mid-turn, where the loop runs timers first
        try:
            time.sleep(0.3)
            broker.process.send_signal(signal.SIGSTOP)
            try:
                worker.send(T.WORK_COMPLETE, handle, b"done")
                time.sleep(2)  # the job's timeout passes while the broker is stopped
            finally:
                broker.process.send_signal(signal.SIGCONT)
            assert client.packet().args == (handle, b"done")
        finally:
            flooding.set()
            flood.join()
        other.send(T.CAN_DO, b"slow")
        other.send(T.GRAB_JOB)
        assert other.packet().type is T.NO_JOB, "it did not run again"


def keep_busy(port: int, done: threading.Event) -> None:
    """Echo requests as fast as they go, their answers read and dropped."""
    with RawConnection(port) as busy:
        reader = threading.Thread(target=_discard, args=(busy.sock,), daemon=True)
        reader.start()
        batch = encode_packet(T.ECHO_REQ, b"x" * 100, magic=MAGIC_REQ) * 500
        busy.sock.settimeout(10)
        while not done.is_set():
            try:
                busy.sock.sendall(batch)
            except OSError:
                return


def _discard(sock: socket.socket) -> None:
    try:
        while sock.recv(1 << 16):
            pass
    except OSError:
        pass


def test_queued_payloads_have_a_memory_budget(tmp_path: Path) -> None:
    """Past --max-queued-bytes the memory store refuses (QUEUE_ERROR, nothing lost), and
    SQLite keeps the rest in the store, bringing it back in order."""
    payload = b"x" * (64 << 10)
    with run_broker("--max-queued-bytes", "1000000") as broker, Client([broker.address]) as client:
        accepted = 0
        with pytest.raises(BrokerError, match="QUEUE_ERROR"):
            for _ in range(100):
                client.submit_background("big", payload)
                accepted += 1
        assert 10 <= accepted <= 16
        assert len(burst_drain(broker.address, "big")) == accepted
        client.submit_background("big", payload)  # room again once drained
    store = f"sqlite:{tmp_path / 'jobs.db'}"
    budget = 2_000_000
    with (
        run_broker(
            "--store", store, "--max-queued-bytes", str(budget), "--metrics-listen", "0"
        ) as broker,
        Client([broker.address]) as client,
    ):
        for start in range(0, 1200, 100):
            client.submit_many(
                [
                    JobRequest("big", b"%05d" % n + payload, background=True)
                    for n in range(start, start + 100)
                ]
            )
        # 75 MiB queued; the broker's own count of what it holds, not the process's RSS
        # (which moves with the allocator and whatever else the machine is doing).
        held = value(scrape(metrics_address(broker.listening)), "spoolgear_queued_payload_bytes")
        # A job is queued in memory while the budget is not yet spent, so the last one in
        # may pass it by its own size.
        assert 0 < held <= budget + len(payload) + 5
        seen = [data[:5] for _, data in burst_drain(broker.address, "big")]
    assert seen == [b"%05d" % n for n in range(1200)]


def test_started_packets_have_a_memory_budget_across_connections() -> None:
    """Five connections each 800 KB into a 1 MB packet, 3 MB allowed in all: the two that
    go past the budget are closed, the other three complete their packets."""
    header = encode_packet(T.ECHO_REQ, b"e" * 1_000_000, magic=MAGIC_REQ)
    with run_broker("--max-pending-bytes", "3000000") as broker:
        peers = [RawConnection(broker.port) for _ in range(5)]
        try:
            for peer in peers:
                peer.send_raw(header[:800_000])
                time.sleep(0.1)  # in order, so which ones go past the budget is known
            closed = [peer.closed_by_peer(wait=1) for peer in peers]
            assert closed == [False, False, False, True, True]
            for peer in peers[:3]:
                peer.send_raw(header[800_000:])
                assert peer.packet().type is T.ECHO_RES
        finally:
            for peer in peers:
                peer.close()
        still_serves(broker)
