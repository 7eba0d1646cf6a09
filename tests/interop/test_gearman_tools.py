"""Debian's gearman-tools (libgearman 1.1.20) against spoolgear: ``gearman`` and ``gearadmin``."""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator

import pytest

from broker.protocol.packets import PacketType
from tests.helpers import RawConnection, RunningBroker, require_peer, run_broker, run_gearmand

T = PacketType


@pytest.fixture
def gearman() -> str:
    return require_peer("gearman")


@pytest.fixture
def gearadmin() -> str:
    return require_peer("gearadmin")


@pytest.fixture
def reverse_worker(broker: RunningBroker, gearman: str) -> Iterator[None]:
    worker = subprocess.Popen(
        [gearman, "-h", "127.0.0.1", "-p", str(broker.port), "-w", "-f", "rev", "--", "rev"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_workers(broker.port, b"rev")
    yield
    worker.terminate()
    worker.wait(10)


def wait_for_workers(port: int, function: bytes) -> None:
    with RawConnection(port) as admin:
        for _ in range(200):
            if b"%s\t" % function in admin.admin(b"status\n") and re.search(
                rb"\t[1-9]\d*\n", admin.admin(b"status\n")
            ):
                return
    raise AssertionError("worker never registered")


def gearman_client(gearman: str, port: int, *args: str, stdin: str = "") -> str:
    result = subprocess.run(
        [gearman, "-h", "127.0.0.1", "-p", str(port), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.usefixtures("reverse_worker")
def test_gearman_client_foreground_priorities_and_unique(
    broker: RunningBroker, gearman: str
) -> None:
    assert gearman_client(gearman, broker.port, "-f", "rev", stdin="hello") == "olleh"
    assert gearman_client(gearman, broker.port, "-I", "-f", "rev", stdin="high") == "hgih"
    assert gearman_client(gearman, broker.port, "-L", "-f", "rev", stdin="low") == "wol"
    assert gearman_client(gearman, broker.port, "-u", "k1", "-f", "rev", stdin="uniq") == "qinu"
    assert gearman_client(gearman, broker.port, "-n", "-f", "rev", stdin="ab\ncd\n") == "ba\ndc\n"


def test_gearman_client_background_and_a_counted_worker(
    broker: RunningBroker, gearman: str
) -> None:
    for payload in ("one", "two"):
        gearman_client(gearman, broker.port, "-b", "-f", "bg", payload)
    with RawConnection(broker.port) as admin:
        assert admin.admin(b"status\n") == b"bg\t2\t0\t0\n.\n"
    done = subprocess.run(
        [
            gearman,
            "-h",
            "127.0.0.1",
            "-p",
            str(broker.port),
            "-w",
            "-c",
            "2",
            "-f",
            "bg",
            "--",
            "cat",
        ],
        capture_output=True,
        timeout=20,
    )
    assert done.returncode == 0
    with RawConnection(broker.port) as admin:
        assert admin.admin(b"status\n") == b"bg\t0\t0\t0\n.\n"


def test_gearman_worker_streams_work_data(broker: RunningBroker, gearman: str) -> None:
    worker = subprocess.Popen(
        [
            gearman,
            "-h",
            "127.0.0.1",
            "-p",
            str(broker.port),
            "-w",
            "-n",
            "-c",
            "1",
            "-f",
            "lines",
            "--",
            "cat",
        ]
    )
    try:
        wait_for_workers(broker.port, b"lines")
        # libgearman prints each WORK_DATA chunk, then the final result (here the first
        # line again): gearmand gives the same "a\na\nb\n".
        output = gearman_client(gearman, broker.port, "-f", "lines", stdin="a\nb\n")
        assert output == "a\na\nb\n"
    finally:
        worker.wait(10)


def prepare_state(port: int) -> list[RawConnection]:
    """The same state on either server: queued jobs, one running job, one worker."""
    client, worker = RawConnection(port), RawConnection(port)
    worker.send(T.SET_CLIENT_ID, b"worker-A")
    worker.send(T.CAN_DO, b"busy")
    client.send(T.SUBMIT_JOB_BG, b"queued", b"unique-1", b"")
    client.send(T.SUBMIT_JOB_HIGH_BG, b"queued", b"", b"")
    client.send(T.SUBMIT_JOB_BG, b"busy", b"unique-2", b"")
    client.send(T.SUBMIT_JOB_LOW_BG, b"dropme", b"", b"")
    for _ in range(4):
        client.packet()
    worker.send(T.GRAB_JOB)
    worker.packet()
    return [client, worker]


def run_gearadmin(gearadmin: str, port: int, *options: str) -> tuple[str, str]:
    result = subprocess.run(
        [gearadmin, "-h", "127.0.0.1", "-p", str(port), *options],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0
    return result.stdout, result.stderr


def normalise(text: str) -> str:
    """Connection numbers and table order differ between servers; nothing else may."""
    text = re.sub(r"^\d+ 127\.0\.0\.1", "FD 127.0.0.1", text, flags=re.MULTILINE)
    return "\n".join(sorted(text.split("\n")))


GEARADMIN_OPTIONS = [
    ["--status"],
    ["--priority-status"],
    ["--workers"],
    ["--show-jobs"],
    ["--show-unique-jobs"],
    ["--server-verbose"],
    ["--create-function", "made"],
    ["--cancel-job", f"H:{socket.gethostname()}:2"],
    ["--cancel-job", "H:none:1"],
    ["--drop-function", "nonexistent"],
    ["--drop-function", "busy"],
    ["--create-function", "made", "--status"],
]


@pytest.mark.parametrize("options", GEARADMIN_OPTIONS, ids=" ".join)
def test_gearadmin_prints_the_same_as_against_gearmand(gearadmin: str, options: list[str]) -> None:
    outputs = []
    with run_gearmand() as port:
        connections = prepare_state(port)
        outputs.append(run_gearadmin(gearadmin, port, *options))
        for conn in connections:
            conn.close()
    # gearmand's default log level, which --server-verbose prints.
    with run_broker("--verbose", "ERROR") as broker:
        connections = prepare_state(broker.port)
        outputs.append(run_gearadmin(gearadmin, broker.port, *options))
        for conn in connections:
            conn.close()
    (expected_out, expected_err), (actual_out, actual_err) = outputs
    assert normalise(actual_out) == normalise(expected_out)
    assert actual_err == expected_err


def test_gearadmin_version_and_pid(broker: RunningBroker, gearadmin: str) -> None:
    assert run_gearadmin(gearadmin, broker.port, "--server-version")[0].startswith("1.1.20")
    assert run_gearadmin(gearadmin, broker.port, "--getpid")[0] == f"{broker.process.pid}\n"


def test_gearadmin_drop_function_after_the_workers_left(gearadmin: str) -> None:
    with run_broker() as broker:
        with RawConnection(broker.port) as worker:
            worker.send(T.CAN_DO, b"gone")
            worker.admin(b"status\n")
        assert run_gearadmin(gearadmin, broker.port, "--drop-function", "gone") == ("OK\n", "")
        assert run_gearadmin(gearadmin, broker.port, "--status") == (".\n", "")
