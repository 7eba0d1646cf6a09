"""A real ``spoolgear serve``: bad input, limits, backpressure, shutdown, and the CLI."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time

import pytest

from broker.protocol.packets import MAGIC_REQ, PacketType, encode_packet
from tests.helpers import SPOOLGEAR, RawConnection, RunningBroker, run_broker
from tests.metrics import metrics_address, scrape, value

T = PacketType


def assert_still_serving(broker: RunningBroker) -> None:
    with RawConnection(broker.port) as other:
        other.send(T.ECHO_REQ, b"alive")
        assert other.packet().args == (b"alive",)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\0XXX\x00\x00\x00\x10\x00\x00\x00\x00",  # bad magic
        b"\0REQ\x00\x00\x00\x2b\x00\x00\x00\x00",  # packet type 43
        b"x" * 9000,  # an admin line longer than 8 KiB
        b"workers a b c d e\n",  # more than five admin words
    ],
    ids=["bad-magic", "unknown-type", "long-admin-line", "six-admin-words"],
)
def test_garbage_closes_only_that_connection(broker: RunningBroker, garbage: bytes) -> None:
    with RawConnection(broker.port) as bad:
        bad.send_raw(garbage)
        assert bad.closed_by_peer()
    assert_still_serving(broker)


def test_response_magic_gets_an_error_and_the_connection_stays(broker: RunningBroker) -> None:
    with RawConnection(broker.port) as conn:
        conn.send_raw(encode_packet(T.ECHO_REQ, b"x"))  # \0RES magic
        assert conn.packet().args == (b"INVALID_MAGIC", b"Request magic expected")
        conn.send(T.ECHO_REQ, b"y")
        assert conn.packet().args == (b"y",)


def test_missing_arguments_get_an_error_not_a_hang(broker: RunningBroker) -> None:
    with RawConnection(broker.port) as conn:
        conn.send(T.SUBMIT_JOB_BG, b"function-only")
        reply = conn.packet()
        assert reply.type is T.ERROR and reply.args[0] == b"INVALID_PACKET"
        conn.send(T.ECHO_REQ, b"next")
        assert conn.packet().args == (b"next",)


def test_packet_size_limit() -> None:
    with run_broker("--max-packet-size", "1024") as broker:
        with RawConnection(broker.port) as conn:
            conn.send(T.SUBMIT_JOB_BG, b"f", b"", b"x" * 1000)
            assert conn.packet().type is T.JOB_CREATED
            conn.send_raw(b"\0REQ\x00\x00\x00\x12" + (10**9).to_bytes(4, "big"))
            reply = conn.packet()
            assert (reply.type, reply.args[0]) == (T.ERROR, b"ARGUMENT_TOO_LARGE")
            assert conn.closed_by_peer()
        assert_still_serving(broker)


def test_text_and_binary_mix_on_one_connection(broker: RunningBroker) -> None:
    with RawConnection(broker.port) as conn:
        conn.send(T.CAN_DO, b"mixed")
        reply = conn.admin(b"status\n")
        assert reply == b"mixed\t0\t0\t1\n.\n"


def test_a_client_that_does_not_read_is_paused_and_others_are_served() -> None:
    with run_broker("--max-output-buffer", "65536", "--metrics-listen", "0") as broker:
        hog = socket.create_connection(("127.0.0.1", broker.port))
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.setblocking(False)
        request = encode_packet(T.ECHO_REQ, b"x" * 65000, magic=MAGIC_REQ)
        stream = memoryview(request * 400)  # 26 MB of echo requests whose replies go unread
        sent = 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and sent < len(stream):
            try:
                sent += hog.send(stream[sent : sent + (1 << 20)])
            except BlockingIOError:
                time.sleep(0.05)
        # The broker stopped reading once its replies backed up: the stream never all got in
        # (what did sits in kernel socket buffers) and the broker did not buffer it either.
        assert sent < len(stream)
        # What the broker read, by its own count (its replies are as large): far less than
        # the 26 MB it would otherwise take in and hold twice over. What it did read comes
        # in chunks of many packets, answered before reading stops, and the kernel's send
        # buffer towards the hog takes some replies.
        samples = scrape(metrics_address(broker.listening))
        assert (
            value(samples, "spoolgear_transferred_bytes_total", direction="in") < len(stream) // 2
        )
        assert_still_serving(broker)
        hog.close()


def test_shutdown_commands() -> None:
    with run_broker() as broker:
        with RawConnection(broker.port) as conn:
            assert conn.admin(b"shutdown\n") == b"OK\r\n"
        assert broker.process.wait(10) == 0
    with run_broker() as broker:
        with RawConnection(broker.port) as client, RawConnection(broker.port) as worker:
            client.send(T.SUBMIT_JOB_BG, b"f", b"", b"")
            client.packet()
            assert client.admin(b"shutdown graceful\n") == b"OK\r\n"
            time.sleep(0.5)
            assert broker.process.poll() is None  # a job is still queued
            worker.send(T.CAN_DO, b"f")
            worker.send(T.GRAB_JOB)
            handle = worker.packet().args[0]
            worker.send(T.WORK_COMPLETE, handle, b"")
        assert broker.process.wait(10) == 0


def test_sigterm_stops_cleanly(broker: RunningBroker) -> None:
    broker.process.send_signal(signal.SIGTERM)
    assert broker.process.wait(10) == 0


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SPOOLGEAR, *args], input=stdin, capture_output=True, text=True, timeout=30
    )


def test_cli_submit_status_and_workers(broker: RunningBroker) -> None:
    server = ["--server", broker.address]
    background = run_cli("submit", *server, "resize", "img-1", "--background")
    assert background.returncode == 0 and background.stdout.startswith("H:")
    delayed = run_cli(
        "submit", *server, "resize", "img-2", "--at", str(time.time() + 3600), "--json"
    )
    assert json.loads(delayed.stdout)["handle"].startswith("H:")
    status = run_cli("status", *server, "--json")
    assert json.loads(status.stdout) == [
        {"name": "resize", "total": 2, "running": 0, "workers": 0, "queued": 2, "unserved": True}
    ]
    table = run_cli("status", *server).stdout.splitlines()
    assert table[0].split() == ["FUNCTION", "QUEUED", "RUNNING", "WORKERS"]
    assert table[1].split() == [
        "resize",
        "2",
        "0",
        "0",
        "!",
        "no",
        "worker:",
        "these",
        "jobs",
        "wait",
    ]
    workers = json.loads(run_cli("workers", *server, "--json").stdout)
    assert all(set(w) == {"fd", "ip", "client_id", "functions"} for w in workers)


def test_cli_foreground_submit_shows_progress_and_the_result(broker: RunningBroker) -> None:
    with RawConnection(broker.port) as worker:
        worker.send(T.CAN_DO, b"work")
        cli = subprocess.Popen(
            [*SPOOLGEAR, "submit", "--server", broker.address, "work", "in"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        worker.send(T.PRE_SLEEP)
        assert worker.packet(10).type is T.NOOP
        worker.send(T.GRAB_JOB)
        handle = worker.packet().args[0]
        worker.send(T.WORK_STATUS, handle, b"1", b"2")
        worker.send(T.WORK_COMPLETE, handle, b"out")
        stdout, stderr = cli.communicate(timeout=20)
    assert cli.returncode == 0
    assert stdout == "out\n"
    assert "50% (1/2)" in stderr


def test_cli_reports_errors_without_a_traceback() -> None:
    result = run_cli("status", "--server", "127.0.0.1:1")
    assert result.returncode == 1
    assert result.stderr.startswith("spoolgear status: cannot connect to 127.0.0.1:1")
    bad = run_cli("serve", "--store", "redis://localhost")
    assert bad.returncode == 1 and "sqlite:PATH" in bad.stderr and "Traceback" not in bad.stderr
