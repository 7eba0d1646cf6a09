"""A raw-socket Gearman load generator (asyncio), the same code for every server measured.

Scenarios: pipelined background enqueue, drain with N workers, foreground round
trips with clients x in-flight jobs (latencies per job), and RSS per queued job.
"""

from __future__ import annotations

import asyncio
import statistics
import struct
import time
from collections import deque
from dataclasses import dataclass

HEADER = struct.Struct(">4sII")
REQ = b"\0REQ"
SUBMIT_JOB, SUBMIT_JOB_BG, JOB_CREATED = 7, 18, 8
CAN_DO, PRE_SLEEP, NOOP, GRAB_JOB_UNIQ = 1, 4, 6, 30
NO_JOB, JOB_ASSIGN_UNIQ, WORK_COMPLETE = 10, 31, 13
PAYLOAD = b"x" * 64
FUNCTION = b"bench"


def packet(kind: int, *args: bytes) -> bytes:
    body = b"\0".join(args)
    return HEADER.pack(REQ, kind, len(body)) + body


GRAB = packet(GRAB_JOB_UNIQ)
SLEEP = packet(PRE_SLEEP)


class Stream(asyncio.Protocol):
    """Splits the byte stream into (type, body) and hands them to ``on_packet``."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def start(self) -> None:
        """Send the first requests; ``done`` resolves when the scenario's part is over."""

    def close(self) -> None:
        assert self.transport is not None
        self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        offset = 0
        end = len(buffer)
        while end - offset >= 12:
            _, kind, size = HEADER.unpack_from(buffer, offset)
            if end - offset - 12 < size:
                break
            self.on_packet(kind, bytes(buffer[offset + 12 : offset + 12 + size]))
            offset += 12 + size
        del buffer[:offset]

    def on_packet(self, kind: int, body: bytes) -> None:
        raise NotImplementedError


async def connect(port: int, factory: type[Stream], count: int, *args: object) -> list[Stream]:
    loop = asyncio.get_running_loop()
    streams = []
    for _ in range(count):
        _, protocol = await loop.create_connection(lambda: factory(*args), "127.0.0.1", port)
        streams.append(protocol)
    return streams


async def run_until_done(streams: list[Stream]) -> float:
    """Start every stream, wait until all are done; returns the seconds that took."""
    started = time.perf_counter()
    for stream in streams:
        stream.start()
    await asyncio.gather(*(stream.done for stream in streams))
    return time.perf_counter() - started


class Submitter(Stream):
    """Pipelines background submits in batches and counts JOB_CREATED; with ``uniques``
    each job has a unique of its own (gearmand's PostgreSQL queue keys rows by it)."""

    def __init__(self, total: int, batch: int, uniques: bool) -> None:
        super().__init__()
        self.total = total
        self.batch = batch
        self.sent = 0
        self.created = 0
        self.request = packet(SUBMIT_JOB_BG, FUNCTION, b"", PAYLOAD)
        self.uniques = b"%x-" % id(self) if uniques else b""

    def start(self) -> None:
        self._send_batch()

    def _send_batch(self) -> None:
        count = min(self.batch, self.total - self.sent)
        assert self.transport is not None
        if self.uniques:
            self.transport.write(
                b"".join(
                    packet(SUBMIT_JOB_BG, FUNCTION, self.uniques + b"%d" % n, PAYLOAD)
                    for n in range(self.sent, self.sent + count)
                )
            )
        else:
            self.transport.write(self.request * count)
        self.sent += count

    def on_packet(self, kind: int, body: bytes) -> None:
        if kind != JOB_CREATED:
            raise RuntimeError(f"unexpected packet {kind}: {body[:80]!r}")
        self.created += 1
        if self.created == self.total:
            self.done.set_result(None)
        elif self.sent < self.total and self.created in (self.sent - self.batch // 2, self.sent):
            self._send_batch()


async def enqueue(
    port: int, total: int, connections: int = 4, batch: int = 1000, *, uniques: bool = False
) -> float:
    """Background submits per second, ``connections`` clients pipelining ``batch`` at a time."""
    share = total // connections
    clients = await connect(port, Submitter, connections, share, batch, uniques)
    elapsed = await run_until_done(clients)
    for client in clients:
        client.close()
    return share * connections / elapsed


class Quota:
    """A job count shared by a pool of workers; ``reached`` resolves when all are done."""

    def __init__(self, total: int) -> None:
        self.remaining = total
        self.reached: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def count_one(self) -> None:
        self.remaining -= 1
        if self.remaining == 0:
            self.reached.set_result(None)


class LoadWorker(Stream):
    """Completes each job at once and grabs the next in the same write.

    Like a real worker it sends PRE_SLEEP on NO_JOB and grabs again on NOOP.
    """

    def __init__(self, quota: Quota | None = None) -> None:
        super().__init__()
        self.quota = quota

    def start(self) -> None:
        assert self.transport is not None
        self.transport.write(packet(CAN_DO, FUNCTION) + GRAB)

    def on_packet(self, kind: int, body: bytes) -> None:
        assert self.transport is not None
        if kind == JOB_ASSIGN_UNIQ:
            handle = body[: body.index(b"\0")]
            self.transport.write(packet(WORK_COMPLETE, handle, b"ok") + GRAB)
            if self.quota is not None:
                self.quota.count_one()
        elif kind == NO_JOB:
            self.transport.write(SLEEP)
        elif kind == NOOP:
            self.transport.write(GRAB)


async def drain(port: int, total: int, workers: int = 8) -> float:
    """Jobs completed per second by ``workers`` connections draining ``total`` queued jobs.

    Workers wait for more rather than stop at the first NO_JOB: a paging broker may
    briefly hold none in memory while it reads the next page.
    """
    quota = Quota(total)
    pool = await connect(port, LoadWorker, workers, quota)
    started = time.perf_counter()
    for worker in pool:
        worker.start()
    await quota.reached
    elapsed = time.perf_counter() - started
    for worker in pool:
        worker.close()
    return total / elapsed


class RoundTripClient(Stream):
    """Keeps ``inflight`` foreground jobs outstanding and records each job's latency."""

    def __init__(self, total: int, inflight: int) -> None:
        super().__init__()
        self.remaining = total
        self.inflight = inflight
        self.pending: deque[float] = deque()
        self.started: dict[bytes, float] = {}
        self.latencies: list[float] = []
        self.request = packet(SUBMIT_JOB, FUNCTION, b"", PAYLOAD)

    def _submit(self, count: int) -> None:
        count = min(count, self.remaining)
        if count <= 0:
            return
        self.remaining -= count
        now = time.perf_counter()
        self.pending.extend([now] * count)
        assert self.transport is not None
        self.transport.write(self.request * count)

    def start(self) -> None:
        self._submit(self.inflight)

    def on_packet(self, kind: int, body: bytes) -> None:
        if kind == JOB_CREATED:
            self.started[body] = self.pending.popleft()
        elif kind == WORK_COMPLETE:
            handle = body[: body.index(b"\0")]
            self.latencies.append(time.perf_counter() - self.started.pop(handle))
            if self.remaining:
                self._submit(1)
            elif not self.started and not self.pending and not self.done.done():
                self.done.set_result(None)


@dataclass
class RoundTrips:
    rate: float
    p50_ms: float
    p99_ms: float


async def round_trips(
    port: int, total: int, clients: int = 8, inflight: int = 8, workers: int = 8
) -> RoundTrips:
    pool = await connect(port, LoadWorker, workers)
    for worker in pool:
        worker.start()
    await asyncio.sleep(0.2)
    submitters = await connect(port, RoundTripClient, clients, total // clients, inflight)
    elapsed = await run_until_done(submitters)
    latencies = sorted(x for c in submitters if isinstance(c, RoundTripClient) for x in c.latencies)
    for stream in [*pool, *submitters]:
        stream.close()
    return RoundTrips(
        len(latencies) / elapsed,
        statistics.median(latencies) * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
    )
