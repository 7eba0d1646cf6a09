"""A blocking Gearman client.

Several servers may be given. A job with a unique goes to the server chosen by
hashing the unique (or the data, for the ``-`` unique), as Perl's
Gearman::Client does, so coalescing works across servers; other jobs rotate.
When the chosen server is down the next one is tried.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from broker.addresses import DEFAULT_SERVER
from broker.errors import (
    BrokerError,
    ConnectionFailed,
    JobException,
    JobFailed,
    ServerError,
)
from broker.gearman.admin_client import AdminClient, JobState
from broker.gearman.connection import Wire
from broker.protocol.packets import MAGIC_REQ, Packet, PacketType, encode_packet
from broker.protocol.priorities import Priority
from broker.tls import TLSFiles

T = PacketType
_SUBMIT_TYPES = {
    (Priority.HIGH, False): T.SUBMIT_JOB_HIGH,
    (Priority.NORMAL, False): T.SUBMIT_JOB,
    (Priority.LOW, False): T.SUBMIT_JOB_LOW,
    (Priority.HIGH, True): T.SUBMIT_JOB_HIGH_BG,
    (Priority.NORMAL, True): T.SUBMIT_JOB_BG,
    (Priority.LOW, True): T.SUBMIT_JOB_LOW_BG,
}

Payload = bytes | str


def _as_bytes(value: Payload) -> bytes:
    return value.encode() if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class JobHandle:
    """Where a submitted job lives: the server address and its handle there."""

    server: str
    handle: str


@dataclass(frozen=True, slots=True)
class JobResult:
    handle: JobHandle
    data: bytes
    """The WORK_COMPLETE payload."""
    chunks: tuple[bytes, ...]
    """WORK_DATA payloads received before completion, in order."""
    warnings: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class JobStatus:
    known: bool
    running: bool
    numerator: int
    denominator: int
    clients: int = 0
    """Foreground clients waiting (only reported by a status-by-unique request)."""


@dataclass(frozen=True, slots=True)
class JobRequest:
    """One job to submit; ``at`` (epoch seconds) makes a delayed background job."""

    function: str
    data: bytes = b""
    unique: str = ""
    priority: Priority = Priority.NORMAL
    background: bool = False
    at: float | None = None
    schedule: tuple[str, ...] | None = None
    """Five SUBMIT_JOB_SCHED fields: a recurring background job (see ``schedule_fields``)."""
    rank: int | None = None
    """A background job's rank instead of ``priority`` (spoolgear's SUBMIT_JOB_RANKED;
    lower runs first, ``task_rank`` maps Django's priorities); gearmand refuses it."""
    key: str = ""
    """A background job's concurrency key (spoolgear's SUBMIT_JOB_KEYED): a flow rule's
    per-key limit counts the running jobs with each key; gearmand refuses it."""

    after: str = ""
    """``chain H1 H2`` or ``group H1 H2``: a background job that runs after these jobs
    (spoolgear's SUBMIT_JOB_AFTER, ``workflows.py``); gearmand refuses it."""

    def packet(self) -> bytes:
        if self.after:
            if not self.background or self.unique or self.at is not None:
                raise ValueError(
                    "a job that runs after others is background, undelayed, unique-less"
                )
            return encode_packet(
                T.SUBMIT_JOB_AFTER,
                self.function.encode(),
                b"",
                self.after.encode(),
                self.data,
                magic=MAGIC_REQ,
            )
        if self.schedule is not None:
            return encode_packet(
                T.SUBMIT_JOB_SCHED,
                self.function.encode(),
                self.unique.encode(),
                *(field.encode() for field in self.schedule),
                self.data,
                magic=MAGIC_REQ,
            )
        if self.key:
            if not self.background:
                raise ValueError("only a background job has a concurrency key")
            return encode_packet(
                T.SUBMIT_JOB_KEYED,
                self.function.encode(),
                self.unique.encode(),
                self.key.encode(),
                b"%d" % (int(self.priority) if self.rank is None else self.rank),
                b"%d" % (0 if self.at is None else math.ceil(self.at)),
                self.data,
                magic=MAGIC_REQ,
            )
        if self.rank is not None:
            if not self.background:
                raise ValueError("only a background job has a rank (SUBMIT_JOB_RANKED)")
            return encode_packet(
                T.SUBMIT_JOB_RANKED,
                self.function.encode(),
                self.unique.encode(),
                b"%d" % self.rank,
                b"%d" % (0 if self.at is None else math.ceil(self.at)),
                self.data,
                magic=MAGIC_REQ,
            )
        if self.at is None:
            return encode_packet(
                _SUBMIT_TYPES[self.priority, self.background],
                self.function.encode(),
                self.unique.encode(),
                self.data,
                magic=MAGIC_REQ,
            )
        if not self.background:
            raise ValueError("only a background job can be delayed (SUBMIT_JOB_EPOCH)")
        if self.priority is not Priority.NORMAL:
            raise ValueError("a delayed job always runs at normal priority (SUBMIT_JOB_EPOCH)")
        return encode_packet(
            T.SUBMIT_JOB_EPOCH,
            self.function.encode(),
            self.unique.encode(),
            b"%d" % math.ceil(self.at),
            self.data,
            magic=MAGIC_REQ,
        )


JobOutcome = JobHandle | JobResult | BrokerError
MAX_UNIQUE = 64
"""Bytes in a Gearman unique (gearmand's limit)."""


def schedule_fields(
    *, cron: str | None = None, every: int | None = None, iterations: int | None = None
) -> tuple[str, ...]:
    """SUBMIT_JOB_SCHED fields for a cron expression ("*/5 * * * *") or, on spoolgear,
    a timer firing ``every`` seconds, ``iterations`` times in all (None: forever)."""
    if (cron is None) == (every is None):
        raise ValueError("give either cron or every")
    if cron is not None:
        fields = tuple(cron.split())
        if len(fields) != 5 or iterations is not None:
            raise ValueError(f"a cron schedule is five fields, without iterations: {cron!r}")
        return fields
    timer = f"@every {every}" + ("" if iterations is None else f" x{iterations}")
    return (timer, "", "", "", "")


def uwsgi_cron(*fields: int | str) -> str:
    """uWSGI's cron numbers (minute, hour, day, month, weekday; -1 any, -N every N) as a
    cron expression; text fields ("1-5", "*/10") are kept as given."""

    def field(value: int | str) -> str:
        if isinstance(value, str):
            return value
        if value == -1:
            return "*"
        return f"*/{-value}" if value < 0 else str(value)

    return " ".join(field(value) for value in fields)


def schedule_unique(name: str) -> str:
    """A schedule's unique for a name: the name, or its digest past Gearman's 64 bytes."""
    if len(name.encode()) <= MAX_UNIQUE:
        return name
    return hashlib.sha256(name.encode()).hexdigest()[:MAX_UNIQUE]


class Client:
    """Submit jobs and ask for their status. Not thread-safe: use one per thread."""

    def __init__(
        self,
        servers: Sequence[str] = (DEFAULT_SERVER,),
        *,
        timeout: float | None = None,
        connect_timeout: float = 5.0,
        tls: TLSFiles | None = None,
    ) -> None:
        if not servers:
            raise ValueError("at least one server address is needed")
        self.servers = list(servers)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.tls_files = tls
        self.tls = tls.client_context() if tls is not None else None
        self._wires: dict[str, Wire] = {}
        self._rotation = itertools.cycle(range(len(self.servers)))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for wire in self._wires.values():
            wire.close()
        self._wires.clear()

    # ----------------------------------------------------------- submitting

    def submit(
        self,
        function: str,
        data: Payload = b"",
        *,
        unique: str = "",
        priority: Priority = Priority.NORMAL,
        timeout: float | None = None,
        on_data: Callable[[bytes], None] | None = None,
        on_status: Callable[[int, int], None] | None = None,
        on_warning: Callable[[bytes], None] | None = None,
    ) -> JobResult:
        """Run a foreground job and wait for its result.

        Raises ``JobFailed`` / ``JobException`` when the worker fails it,
        ``JobTimeout`` after ``timeout`` seconds (default: the client's), and
        ``ServerError`` when the server refuses it (e.g. a full queue).
        """
        request = JobRequest(function, _as_bytes(data), unique, priority)
        deadline = self._deadline(timeout)
        wire, handle = self._send_submit(request, deadline)
        chunks: list[bytes] = []
        warnings: list[bytes] = []
        try:
            while True:
                reply = wire.read_packet(deadline)
                if reply.args[0] != handle:
                    continue
                kind = reply.type
                if kind is T.WORK_COMPLETE:
                    return JobResult(
                        JobHandle(wire.address, handle.decode()),
                        reply.args[1],
                        tuple(chunks),
                        tuple(warnings),
                    )
                if kind is T.WORK_DATA:
                    chunks.append(reply.args[1])
                    if on_data is not None:
                        on_data(reply.args[1])
                elif kind is T.WORK_WARNING:
                    warnings.append(reply.args[1])
                    if on_warning is not None:
                        on_warning(reply.args[1])
                elif kind is T.WORK_STATUS and on_status is not None:
                    on_status(_int(reply.args[1]), _int(reply.args[2]))
                elif kind in (T.WORK_FAIL, T.WORK_EXCEPTION):
                    raise _job_failure(reply)
        except (ConnectionFailed, TimeoutError):
            self._drop(wire)
            raise

    def job_state(self, handle: JobHandle) -> JobState | None:
        """A background job's state, or how it ended (kept by spoolgear for
        ``--keep-results``), asked of the server that gave ``handle``; None when that
        server does not know it (never given, or its result expired)."""
        timeout = self.connect_timeout if self.timeout is None else self.timeout
        with AdminClient(handle.server, timeout=timeout, tls=self.tls_files) as admin:
            return admin.result(handle.handle)

    def cancel(self, handle: JobHandle) -> bool:
        """Cancel a queued, delayed or running job on the server that gave ``handle``: it
        never runs (again), its result says ``cancelled``, and a spoolgear worker running
        it is told to stop. False when the server does not know the job (it ended)."""
        timeout = self.connect_timeout if self.timeout is None else self.timeout
        with AdminClient(handle.server, timeout=timeout, tls=self.tls_files) as admin:
            return admin.cancel(handle.handle)

    def submit_background(
        self,
        function: str,
        data: Payload = b"",
        *,
        unique: str = "",
        priority: Priority = Priority.NORMAL,
        at: float | dt.datetime | None = None,
        key: str = "",
    ) -> JobHandle:
        """Queue a background job; ``at`` (epoch seconds or an aware datetime) delays it;
        ``key`` is its concurrency key (``JobRequest.key``)."""
        request = JobRequest(
            function,
            _as_bytes(data),
            unique,
            priority,
            background=True,
            at=at.timestamp() if isinstance(at, dt.datetime) else at,
            key=key,
        )
        wire, handle = self._send_submit(request, self._deadline(None))
        return JobHandle(wire.address, handle.decode())

    def submit_schedule(
        self, function: str, data: Payload = b"", *, unique: str = "", fields: tuple[str, ...]
    ) -> JobHandle:
        """Register a recurring job (``fields`` from ``schedule_fields``). With a unique it
        is idempotent: the same schedule answers its handle, a changed one replaces it."""
        request = JobRequest(function, _as_bytes(data), unique, background=True, schedule=fields)
        wire, handle = self._send_submit(request, self._deadline(None))
        return JobHandle(wire.address, handle.decode())

    def submit_many(
        self, requests: Sequence[JobRequest], *, timeout: float | None = None
    ) -> list[JobOutcome]:
        """Submit a batch with one write per server, then collect every answer.

        Returns, in request order, a ``JobHandle`` per background job and a
        ``JobResult`` per foreground job; a job the server refused or a worker
        failed comes back in its place as the ``ServerError`` / ``JobFailed`` /
        ``JobException`` that ``submit`` would have raised. Unlike single
        submits there is no failover: a server that cannot be reached raises
        ``ConnectionFailed``.
        """
        deadline = self._deadline(timeout)
        by_server: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            address = self._server_order(request.unique, request.data)[0]
            by_server.setdefault(address, []).append(index)
        outcomes: list[JobOutcome | None] = [None] * len(requests)
        for address, indexes in by_server.items():
            wire = self._wire(address)
            try:
                wire.send(b"".join(requests[i].packet() for i in indexes))
                self._collect(wire, requests, indexes, outcomes, deadline)
            except (ConnectionFailed, TimeoutError):
                self._drop(wire)
                raise
        return [outcome for outcome in outcomes if outcome is not None]

    def _collect(
        self,
        wire: Wire,
        requests: Sequence[JobRequest],
        indexes: list[int],
        outcomes: list[JobOutcome | None],
        deadline: float | None,
    ) -> None:
        """Read one server's answers to a pipelined batch until every job has its outcome.

        The server answers submissions in order, but results of jobs created
        earlier may arrive between two JOB_CREATED packets.
        """
        unanswered = iter(indexes)
        running: dict[bytes, list[int]] = {}
        pending = len(indexes)
        while pending:
            reply = wire.read_packet(deadline)
            kind = reply.type
            if kind is T.ERROR:
                outcomes[next(unanswered)] = _server_error(reply)
                pending -= 1
            elif kind is T.JOB_CREATED:
                index = next(unanswered)
                handle = reply.args[0]
                if requests[index].background:
                    outcomes[index] = JobHandle(wire.address, handle.decode())
                    pending -= 1
                else:
                    running.setdefault(handle, []).append(index)
            elif kind in (T.WORK_COMPLETE, T.WORK_FAIL, T.WORK_EXCEPTION):
                for index in running.pop(reply.args[0], ()):
                    outcomes[index] = (
                        JobResult(
                            JobHandle(wire.address, reply.args[0].decode()), reply.args[1], (), ()
                        )
                        if kind is T.WORK_COMPLETE
                        else _job_failure(reply)
                    )
                    pending -= 1

    def submit_after(
        self, function: str, data: Payload = b"", *, after: Sequence[JobHandle], mode: str = "chain"
    ) -> JobHandle:
        """Queue a background job that runs after the ``after`` jobs, on their server:
        ``chain``, once every one of them succeeded (if one fails it ends failed without
        running); ``group``, once every one of them ended. Spoolgear only."""
        servers = {handle.server for handle in after}
        if len(servers) != 1:
            raise ValueError("the jobs to run after must all be on one server")
        text = " ".join([mode, *(handle.handle for handle in after)])
        request = JobRequest(function, _as_bytes(data), background=True, after=text)
        wire, handle = self._send_submit(request, self._deadline(None), servers.pop())
        return JobHandle(wire.address, handle.decode())

    def _send_submit(
        self, request: JobRequest, deadline: float | None, server: str | None = None
    ) -> tuple[Wire, bytes]:
        """Send to the first server that takes it (``server``: to that one only)."""
        packet = request.packet()
        errors = []
        order = [server] if server else self._server_order(request.unique, request.data)
        for address in order:
            try:
                wire = self._wire(address)
                wire.send(packet)
                reply = self._expect(wire, T.JOB_CREATED, deadline)
                return wire, reply.args[0]
            except ConnectionFailed as exc:
                self._drop_address(address)
                errors.append(str(exc))
            except TimeoutError:
                self._drop_address(address)  # a late JOB_CREATED must not confuse the next call
                raise
        raise ConnectionFailed("no server accepted the job: " + "; ".join(errors))

    def _server_order(self, unique: str, payload: bytes) -> list[str]:
        if unique:
            key = payload if unique == "-" else unique.encode()
            first = zlib.crc32(key) % len(self.servers)
        else:
            first = next(self._rotation)
        return self.servers[first:] + self.servers[:first]

    # ----------------------------------------------------------- status

    def get_status(self, handle: JobHandle) -> JobStatus:
        wire = self._wire(handle.server)
        wire.send(encode_packet(T.GET_STATUS, handle.handle.encode(), magic=MAGIC_REQ))
        _, known, running, numerator, denominator = self._expect(
            wire, T.STATUS_RES, self._deadline(None)
        ).args
        return JobStatus(known == b"1", running == b"1", _int(numerator), _int(denominator))

    def get_status_unique(self, unique: str) -> JobStatus:
        address = self._server_order(unique, b"")[0]
        wire = self._wire(address)
        wire.send(encode_packet(T.GET_STATUS_UNIQUE, unique.encode(), magic=MAGIC_REQ))
        _, known, running, numerator, denominator, clients = self._expect(
            wire, T.STATUS_RES_UNIQUE, self._deadline(None)
        ).args
        return JobStatus(
            known == b"1", running == b"1", _int(numerator), _int(denominator), _int(clients)
        )

    def ping(self, address: str) -> float:
        """Seconds an ECHO_REQ takes to come back from the server at ``address``."""
        wire = self._wire(address)
        started = time.monotonic()
        wire.send(encode_packet(T.ECHO_REQ, b"ping", magic=MAGIC_REQ))
        self._expect(wire, T.ECHO_RES, self._deadline(None))
        return time.monotonic() - started

    # ----------------------------------------------------------- plumbing

    def _deadline(self, timeout: float | None) -> float | None:
        timeout = self.timeout if timeout is None else timeout
        return None if timeout is None else time.monotonic() + timeout

    def _wire(self, address: str) -> Wire:
        wire = self._wires.get(address)
        if wire is None:
            wire = Wire(address, connect_timeout=self.connect_timeout, tls=self.tls)
            wire.send(encode_packet(T.OPTION_REQ, b"exceptions", magic=MAGIC_REQ))
            self._wires[address] = wire
            self._expect(wire, T.OPTION_RES, time.monotonic() + self.connect_timeout)
        return wire

    def _expect(self, wire: Wire, kind: PacketType, deadline: float | None) -> Packet:
        """Read until a packet of ``kind``; an ERROR packet raises ``ServerError``."""
        while True:
            reply = wire.read_packet(deadline)
            if reply.type is kind:
                return reply
            if reply.type is T.ERROR:
                raise _server_error(reply)

    def _drop(self, wire: Wire) -> None:
        self._drop_address(wire.address)

    def _drop_address(self, address: str) -> None:
        wire = self._wires.pop(address, None)
        if wire is not None:
            wire.close()


def _server_error(reply: Packet) -> ServerError:
    return ServerError(reply.args[0].decode(), reply.args[1].decode("utf-8", "replace"))


def _job_failure(reply: Packet) -> JobFailed:
    handle = reply.args[0].decode()
    if reply.type is T.WORK_EXCEPTION:
        return JobException(handle, reply.args[1])
    return JobFailed(handle)


def _int(value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        return 0
