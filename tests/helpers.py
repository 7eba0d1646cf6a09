"""Shared test helpers: real broker and gearmand processes, raw sockets, peer checks."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from broker.admin import AdminClient
from broker.banner import PREFIX as BANNER_PREFIX
from broker.banner import read_banner
from broker.protocol.packets import MAGIC_REQ, Packet, PacketType, encode_packet
from broker.protocol.reader import PacketReader
from broker.uwsgi_client import connect as connect_uwsgi
from broker.worker import Worker, WorkerJob

ROOT = Path(__file__).resolve().parent.parent
SPOOLGEAR = [sys.executable, "-m", "broker.cli"]
IN_CI = os.environ.get("CI") == "true"


def require_peer(program: str) -> str:
    """Path of a peer program; skip without it locally, fail without it in CI."""
    path = shutil.which(program)
    if path is None:
        message = f"test peer {program!r} is not installed (make peers installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1]) if address else 0


class RunningBroker:
    def __init__(self, process: subprocess.Popen[str], listening: str) -> None:
        """``listening`` is the broker's ``spoolgear listening gearman=... uwsgi=...`` line."""
        self.process = process
        self.listening = listening
        self.banner = read_banner(listening)
        self.port = port_of(self.banner.gearman)
        """The plaintext Gearman port (with ``--ssl``: the ``--plain-listen`` one, if any)."""
        self.tls_port = port_of(self.banner.first("gearmans"))
        self.address = f"127.0.0.1:{self.port}"
        self.uwsgi = self.banner.all("uwsgi")
        self.suwsgi = self.banner.all("suwsgi")
        self.log = ""
        """The broker's stderr, once it has stopped."""


@contextmanager
def run_broker(*args: str, env: dict[str, str] | None = None) -> Iterator[RunningBroker]:
    """A real ``spoolgear serve`` on a free port; fails the test if it logged a traceback.
    Its log goes to a file, read once it stops: a pipe nobody reads while the test runs
    would stall a broker that logs more than the pipe holds."""
    if "--store" not in args:
        args = ("--store", "memory:", *args)
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [*SPOOLGEAR, "serve", "--port", "0", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith(BANNER_PREFIX):
            process.kill()
            process.communicate()
            log.seek(0)
            raise AssertionError(f"broker did not start: {line!r} {log.read()!r}")
        running = RunningBroker(process, line)
        try:
            yield running
        finally:
            process.terminate()
            try:
                process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
            log.seek(0)
            running.log = log.read()
            assert "Traceback" not in running.log, running.log


@contextmanager
def run_peer(
    command: list[str], port: int, *, stop: signal.Signals = signal.SIGTERM
) -> Iterator[subprocess.Popen[bytes]]:
    """A peer program (its output dropped) from the moment it listens on ``port``; stopped
    with ``stop`` when the block ends."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout=30)
        yield process
    finally:
        process.send_signal(stop)
        process.wait(timeout=10)


@contextmanager
def run_gearmand(*args: str) -> Iterator[int]:
    """Debian's gearmand 1.1.20 on a free port (single I/O thread), for differential tests."""
    binary = require_peer("gearmand")
    port = free_port()
    command = [binary, "-p", str(port), "-L", "127.0.0.1", "-t", "1", "--log-file=none", *args]
    with run_peer(command, port):
        yield port


def burst_drain(address: str, *functions: str) -> list[tuple[str, bytes]]:
    """Run every queued job of ``functions`` once with a burst worker; (function, payload)
    of each, in the order they ran."""
    seen: list[tuple[str, bytes]] = []

    def record(job: WorkerJob) -> None:
        seen.append((job.function, job.data))

    with Worker([address]) as worker:
        for function in functions:
            worker.register(function, record)
        worker.work(burst=True)
    return seen


def uwsgi_exchange(address: str, data: bytes, wait: float = 5.0) -> bytes:
    """Send raw bytes to a uwsgi socket, return everything received until it closes."""
    with connect_uwsgi(address, wait) as sock:
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(100):
                received += chunk
        except ConnectionResetError:
            pass
        return received


def wait_until(
    condition: Callable[[], object], what: str = "the condition held", timeout: float = 10.0
) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds (a
    liveness bound, not a timing assertion), saying ``what`` it waited for."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def queued(address: str, function: str = "f") -> int:
    """The jobs a broker's ``status`` counts for ``function``."""
    with AdminClient(address) as admin:
        return sum(s.total for s in admin.status() if s.name == function)


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


class RawConnection:
    """A raw socket speaking packets and admin lines, for byte-level assertions."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="127.0.0.1")
        self.reader = PacketReader(accept_text=False)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, packet_type: PacketType, *args: bytes) -> None:
        self.sock.sendall(encode_packet(packet_type, *args, magic=MAGIC_REQ))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def packet(self, timeout: float = 5.0) -> Packet:
        self.sock.settimeout(timeout)
        while True:
            event = self.reader.next_event()
            if event is not None:
                assert isinstance(event, Packet)
                return event
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.reader.feed(data)

    def packets_until_closed(self, timeout: float = 30.0) -> list[Packet]:
        """Every packet that arrives until the peer closes the connection."""
        packets = []
        while True:
            try:
                packets.append(self.packet(timeout))
            except (ConnectionError, OSError):
                return packets

    def quiet(self, wait: float = 0.2) -> bool:
        """True if nothing arrives within ``wait`` seconds (and the socket is open)."""
        if self.reader.pending:
            return False
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return True
        self.reader.feed(data)
        return False

    def closed_by_peer(self, wait: float = 2.0) -> bool:
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(65536) == b""
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True

    def admin(self, line: bytes, settle: float = 0.15) -> bytes:
        """Send one admin line and collect everything that arrives until it goes quiet."""
        self.sock.sendall(line)
        self.sock.settimeout(5)
        chunks = [self.sock.recv(65536)]
        self.sock.settimeout(settle)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except TimeoutError:
            pass
        return b"".join(chunks)


def _submit_pipelined(port: int, prefix: bytes, acked: list[bytes], stop: threading.Event) -> None:
    """Pipeline background submits to ``f``; a payload counts once its JOB_CREATED
    arrived."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(5)
    buffer = b""
    sent: list[bytes] = []
    try:
        batch = 0
        while not stop.is_set():
            payloads = [b"%s-%d-%d" % (prefix, batch, i) for i in range(50)]
            sock.sendall(
                b"".join(
                    encode_packet(PacketType.SUBMIT_JOB_BG, b"f", b"", p, magic=MAGIC_REQ)
                    for p in payloads
                )
            )
            sent.extend(payloads)
            while len(acked) < len(sent):
                data = sock.recv(65536)
                if not data:
                    return
                buffer += data
                while len(buffer) >= 12:
                    size = int.from_bytes(buffer[8:12], "big")
                    if len(buffer) < 12 + size:
                        break
                    if buffer[4:8] != PacketType.JOB_CREATED.to_bytes(4, "big"):
                        return  # refused (an ERROR): the client's to resend
                    acked.append(sent[len(acked)])
                    buffer = buffer[12 + size :]
            batch += 1
    except OSError:
        return  # the broker died: whatever was not acknowledged is the client's to resend
    finally:
        sock.close()


@contextmanager
def pipelined_submitters(port: int, clients: int = 4) -> Iterator[list[list[bytes]]]:
    """Clients pipelining background submits to ``f`` until the block ends (or the broker
    dies); yields, per client, the payloads acknowledged so far."""
    acked: list[list[bytes]] = [[] for _ in range(clients)]
    stop = threading.Event()
    threads = [
        threading.Thread(target=_submit_pipelined, args=(port, b"c%d" % i, acked[i], stop))
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    try:
        yield acked
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
