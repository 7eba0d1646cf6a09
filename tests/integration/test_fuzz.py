"""Generated hostile traffic on both doors while a well-behaved client and worker carry on.

100,000 packets per door by default (``SPOOLGEAR_FUZZ_PACKETS``), from a fixed seed so a
failure can be replayed: mostly well-formed frames with random types, argument counts
and contents (numbers of any length, NULs, cron and ``@every`` text, handles), some
with bad magic, wrong sizes or cut short, and admin lines. The broker must never die,
the honest pair must see no error and lose no acknowledged job, and the log must hold
no traceback (``run_broker`` checks that when the broker stops).
"""

from __future__ import annotations

import os
import random
import socket
import struct
import threading
from collections.abc import Iterator

from broker.admin import AdminClient
from broker.client import Client
from broker.errors import BrokerError
from broker.protocol.packets import MAGIC_REQ
from broker.protocol.uwsgi import encode_vars
from broker.worker import Worker, WorkerJob
from tests.helpers import RunningBroker, burst_drain, run_broker

PACKETS = int(os.environ.get("SPOOLGEAR_FUZZ_PACKETS", "100000"))
SEED = 20261129
HONEST = "honest.echo"
# Admin commands the fuzzer may send: not shutdown, nothing that cancels or drops what
# the honest pair owns (its jobs and function are never named; handles are guessed).
ADMIN = [
    b"status",
    b"prioritystatus",
    b"workers",
    b"version",
    b"verbose",
    b"getpid",
    b"show jobs",
    b"show unique jobs",
    b"show schedules",
    b"show failed",
    b"maxqueue fuzz",
    b"create function fuzz",
    b"drop function fuzz",
    b"cancel job H:x:",
    b"retry failed",
    b"drop failed",
    b"show",
    b"nonsense",
]
WORDS = [
    b"",
    b"0",
    b"-1",
    b"9" * 25,
    b"9" * 400,
    b"1.5",
    b"@every 1",
    b"@every " + b"9" * 30,
    b"*/5",
    b"1-3",
    b"H:fuzz:1",
    b"fuzz",
    b"fuzz.f",
    b"\x00",
    b"\xff" * 3,
    b"a" * 70,
]


class Honest:
    """A client and a worker using the broker properly for the whole run."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.errors: list[str] = []
        self.results = 0
        self.acknowledged: list[bytes] = []
        self.stop = threading.Event()
        self.worker = Worker([address])
        self.worker.register(HONEST, self.echo)
        self.threads = [
            threading.Thread(target=self.worker.work),
            threading.Thread(target=self.submit),
        ]

    def echo(self, job: WorkerJob) -> bytes:
        return job.data

    def submit(self) -> None:
        with Client([self.address], timeout=30) as client:
            number = 0
            while not self.stop.is_set():
                number += 1
                try:
                    payload = b"ask %d" % number
                    if client.submit(HONEST, payload).data != payload:
                        self.errors.append(f"wrong result for {payload!r}")
                    self.results += 1
                    client.submit_background("honest.later", b"keep %d" % number)
                    self.acknowledged.append(b"keep %d" % number)
                except BrokerError as exc:
                    self.errors.append(repr(exc))

    def __enter__(self) -> Honest:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.threads[1].join(30)
        self.worker.stop()
        self.threads[0].join(30)
        self.worker.close()


def gearman_frames(rng: random.Random, count: int) -> Iterator[bytes]:
    for _ in range(count):
        roll = rng.random()
        if roll < 0.1:
            yield rng.choice(ADMIN) + b" " + rng.choice(WORDS) + b"\n"
            continue
        args = [
            rng.choice(WORDS) if rng.random() < 0.7 else rng.randbytes(rng.randrange(12))
            for _ in range(rng.randrange(8))
        ]
        body = b"\x00".join(args)
        kind = rng.randrange(1, 46) if roll < 0.97 else rng.randrange(46, 1000)
        magic = MAGIC_REQ if roll < 0.99 else rng.randbytes(4)
        size = len(body) if rng.random() < 0.98 else rng.randrange(len(body) + 1)
        yield magic + struct.pack(">II", kind, size) + body


def fuzz_gearman(port: int, count: int) -> None:
    rng = random.Random(SEED)
    frames = gearman_frames(rng, count)
    sent = 0
    while sent < count:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(5)
            reader = threading.Thread(target=_discard, args=(sock,), daemon=True)
            reader.start()
            try:
                for frame in frames:
                    sent += 1
                    sock.sendall(frame)
                    if sent % 2000 == 0 or sent >= count:
                        break
            except OSError:  # the broker closed this one (bad magic, bad type): go on
                pass


def _discard(sock: socket.socket) -> None:
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def spool_packets(rng: random.Random, count: int) -> Iterator[bytes]:
    keys = [b"ud_spool_func", b"function_name", b"spooler", b"priority", b"at", b"body", b"k"]
    for _ in range(count):
        pairs = [
            (
                rng.choice(keys) if rng.random() < 0.8 else rng.randbytes(rng.randrange(1, 6)),
                rng.choice(WORDS) if rng.random() < 0.8 else rng.randbytes(rng.randrange(20)),
            )
            for _ in range(rng.randrange(5))
        ]
        block = encode_vars(pairs)
        modifier1 = 17 if rng.random() < 0.95 else rng.randrange(256)
        size = len(block) if rng.random() < 0.95 else rng.randrange(0x10000)
        packet = struct.pack("<BHB", modifier1, size, 0) + block
        cut = rng.random()
        yield (
            packet[: rng.randrange(len(packet))]
            if cut < 0.02
            else (packet + rng.randbytes(rng.randrange(40)) if cut < 0.1 else packet)
        )


def fuzz_uwsgi(address: str, count: int, senders: int = 32) -> int:
    """Send ``count`` packets, one per connection; returns how many were acknowledged."""
    host, port = address.rsplit(":", 1)
    rng = random.Random(SEED)
    packets = list(spool_packets(rng, count))
    acknowledged = [0] * senders

    def send(index: int) -> None:
        for packet in packets[index::senders]:
            try:
                with socket.create_connection((host, int(port)), timeout=10) as sock:
                    sock.sendall(packet)
                    if sock.recv(4) == b"\xff\x00\x00\x01":
                        acknowledged[index] += 1
            except OSError:
                pass  # closed unanswered: malformed, cut short or over the size

    threads = [threading.Thread(target=send, args=(n,)) for n in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(acknowledged)


def test_the_gearman_door_under_generated_packets() -> None:
    with run_broker("--packet-timeout", "2") as broker:
        with Honest(broker.address) as honest:
            fuzz_gearman(broker.port, PACKETS)
            during = honest.results
        assert_alive(broker)
        kept = {data for _, data in burst_drain(broker.address, "honest.later")}
    assert honest.errors == []
    assert during > 0 and honest.results >= during, "the honest pair worked throughout"
    assert set(honest.acknowledged) <= kept, "no acknowledged job was lost"


def assert_alive(broker: RunningBroker) -> None:
    assert broker.process.poll() is None, "the broker died"
    with AdminClient(broker.address) as admin:
        assert admin.version().startswith("1.1.20")


def test_the_uwsgi_door_under_generated_packets() -> None:
    with run_broker("--uwsgi-socket", "127.0.0.1:0", "--uwsgi-timeout", "0.2") as broker:
        acknowledged = fuzz_uwsgi(broker.uwsgi[0], PACKETS)
        assert_alive(broker)
        with AdminClient(broker.address) as admin:
            queued = sum(status.total for status in admin.status())
    assert acknowledged > 0
    assert queued == acknowledged, "every acknowledged request is a job, and no other"
