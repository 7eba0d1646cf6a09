"""A blocking Gearman worker that serves every configured server at once.

Per job the result and the next GRAB_JOB_UNIQ leave in one write. With ``prefetch``
N it keeps up to N grabs outstanding per server, so the server picks the next job
while this one runs (faster on short jobs, but a long job holds up to N-1 others
that an idle worker could have taken). Unset, the depth follows the jobs' pace
(``AutoPrefetch``): one while jobs take milliseconds, more while they take
microseconds and a round trip per job would be most of their cost. It sends
PRE_SLEEP only once every grab came back NO_JOB, then waits for the server's
NOOP. A lost server is retried with exponential backoff while the others keep
working. ``stop()`` (also safe from a signal handler) sends no more grabs, lets
the running job finish and report, runs any job already handed over by an
outstanding grab, then returns from ``work()``: nothing is left assigned to a
closing connection. It asks for cancel notices: a cancelled job stops at its next
progress report or check, and with ``cancel_grace`` the process ends if it does not
(``cancel.py``).
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from broker.addresses import DEFAULT_SERVER
from broker.errors import ConnectionFailed, JobCancelled, RetryLater, WorkFailed
from broker.gearman.cancel import CancelWatch, notice_waiting
from broker.gearman.connection import Wire
from broker.gearman.steps import JobStep, tracking_current_job
from broker.protocol.packets import CANCEL_NOTICES, MAGIC_REQ, Packet, PacketType, encode_packet
from broker.tls import TLSFiles

log = logging.getLogger("spoolgear.worker")
T = PacketType
GRAB = encode_packet(T.GRAB_JOB_UNIQ, magic=MAGIC_REQ)
PRE_SLEEP = encode_packet(T.PRE_SLEEP, magic=MAGIC_REQ)
ASK_CANCEL_NOTICES = encode_packet(T.OPTION_REQ, CANCEL_NOTICES, magic=MAGIC_REQ)
# Reconnect backoff after a server is lost: first delay, doubled up to the cap.
RECONNECT_FIRST_DELAY = 0.2
RECONNECT_MAX_DELAY = 30.0


class WorkerJob:
    """What a task function receives: the job's identity, payload and progress channel."""

    __slots__ = ("_cancelled", "_wire", "data", "function", "handle", "unique")

    def __init__(
        self, wire: Wire, handle: bytes, function: bytes, unique: bytes, data: bytes
    ) -> None:
        self._wire = wire
        self.handle = handle.decode()
        self.function = function.decode()
        self.unique = unique.decode("utf-8", "replace")
        self.data = data
        self._cancelled = False

    @property
    def server(self) -> str:
        """The address of the server that handed out this job."""
        return self._wire.address

    def _send(self, kind: PacketType, *args: bytes) -> None:
        self._wire.send(encode_packet(kind, self.handle.encode(), *args, magic=MAGIC_REQ))

    def send_status(self, numerator: int, denominator: int) -> None:
        """Report progress; raises ``JobCancelled`` if the job was cancelled meanwhile."""
        self._send(T.WORK_STATUS, b"%d" % numerator, b"%d" % denominator)
        self.check_cancelled()

    @property
    def cancelled(self) -> bool:
        """Whether the broker said this job was cancelled (its result will be discarded)."""
        if not self._cancelled:
            self._cancelled = notice_waiting(self._wire.sock, self.handle.encode())
        return self._cancelled

    def check_cancelled(self) -> None:
        """Raise ``JobCancelled`` if the job was cancelled: a long task calls it now and
        then to stop early."""
        if self.cancelled:
            raise JobCancelled(self.handle)

    def send_data(self, data: bytes | str) -> None:
        self._send(T.WORK_DATA, data.encode() if isinstance(data, str) else data)

    def send_warning(self, data: bytes | str) -> None:
        self._send(T.WORK_WARNING, data.encode() if isinstance(data, str) else data)


TaskFunction = Callable[[WorkerJob], bytes | str | None]


@dataclass
class _Server:
    address: str
    wire: Wire | None = None
    sleeping: bool = False
    grabs: int = 0
    """GRAB_JOB_UNIQ packets sent and not yet answered."""
    retry_at: float = 0.0
    delay: float = RECONNECT_FIRST_DELAY


AUTO_PREFETCH_MOST = 16
AUTO_PREFETCH_HOLD_SECONDS = 0.002
"""Unset ``prefetch``: the jobs held behind the running one should take about this long
in all at the recent pace, and at most this many grabs are outstanding."""
AUTO_PREFETCH_SMOOTHING = 0.2
"""Weight of the latest job in the moving average of job times."""


class AutoPrefetch:
    """The grabs to keep outstanding when ``prefetch`` is not set. It starts at one, as if
    jobs took ``AUTO_PREFETCH_HOLD_SECONDS``; with a moving average of job times it holds
    as many jobs ahead as run in that time, up to ``AUTO_PREFETCH_MOST``. One slow job
    brings it back to one at once, so a worker of long jobs never holds any back; a long
    job right after a run of short ones holds back what was already grabbed."""

    __slots__ = ("average",)

    def __init__(self) -> None:
        self.average = AUTO_PREFETCH_HOLD_SECONDS

    def ran(self, seconds: float) -> None:
        self.average += (seconds - self.average) * AUTO_PREFETCH_SMOOTHING
        if seconds > AUTO_PREFETCH_HOLD_SECONDS:
            self.average = max(self.average, seconds)

    def depth(self) -> int:
        ahead = AUTO_PREFETCH_HOLD_SECONDS / max(self.average, 1e-9)
        return max(1, min(AUTO_PREFETCH_MOST, int(ahead)))


@dataclass
class _Task:
    function: TaskFunction
    timeout: float | None = None


class Worker:
    def __init__(
        self,
        servers: Sequence[str] = (DEFAULT_SERVER,),
        *,
        client_id: str | None = None,
        prefetch: int | None = None,
        tls: TLSFiles | None = None,
        steps: Sequence[JobStep] = (),
        cancel_grace: float | None = None,
    ) -> None:
        """``steps`` run around every job, in order (``broker.gearman.steps``), inside
        ``tracking_current_job``; the job's function runs innermost, and whatever it
        raises passes through them. ``cancel_grace``: seconds a cancelled job may run on
        before this process ends (None: it runs to its end, its result discarded).
        ``prefetch``: grabs kept outstanding per server; None follows the jobs' pace
        (``AutoPrefetch``), except with a task timeout, which counts from the hand-over."""
        if not servers:
            raise ValueError("at least one server address is needed")
        if prefetch is not None and prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        self.servers = list(servers)
        self.client_id = client_id
        self.prefetch = prefetch
        self.tls = tls.client_context() if tls is not None else None
        self.tasks: dict[str, _Task] = {}
        self.steps = list(steps)
        self._stopping = False
        self._pace: AutoPrefetch | None = None
        self._grab_budget: int | None = None
        """Jobs ``max_jobs`` still allows, minus grabs outstanding; None without a limit."""
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_writer.setblocking(False)
        self.cancel_grace = cancel_grace
        self._watch: CancelWatch | None = None
        self._unanswered: set[bytes] = set()
        """Cancelled jobs whose result this worker did not send."""
        self._late_cancels = 0
        """Cancel notices for jobs whose result went anyway: the broker answers each
        result with JOB_NOT_FOUND, which is then no surprise."""

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the wake-up socket pair (``work()`` closes its own connections)."""
        self._wake_reader.close()
        self._wake_writer.close()

    def register(self, name: str, function: TaskFunction, *, timeout: float | None = None) -> None:
        """Serve ``name`` with ``function``; ``timeout`` seconds makes the server requeue
        a job this worker holds for longer (CAN_DO_TIMEOUT)."""
        self.tasks[name] = _Task(function, timeout)

    def stop(self) -> None:
        """Finish the current job, then leave ``work()``. Safe to call from a signal handler."""
        self._stopping = True
        with contextlib.suppress(OSError):  # already closed, or the wake-up is pending
            self._wake_writer.send(b"x")

    def work(self, *, max_jobs: int | None = None, burst: bool = False) -> int:
        """Process jobs until ``stop()``; returns the number of jobs done.

        ``burst``: return once every server has said NO_JOB. ``max_jobs``: return
        after that many jobs.
        """
        if not self.tasks:
            raise ValueError("register at least one task before calling work()")
        self._stopping = False
        self._grab_budget = max_jobs
        timed = any(task.timeout for task in self.tasks.values())
        self._pace = AutoPrefetch() if self.prefetch is None and not timed else None
        servers = [_Server(address) for address in self.servers]
        selector = selectors.DefaultSelector()
        selector.register(self._wake_reader, selectors.EVENT_READ, None)
        done = 0
        if self.cancel_grace is not None:
            self._watch = CancelWatch(self.cancel_grace)
            self._watch.start()
        try:
            while not (self._stopping or self._grab_budget == 0) or any(
                server.grabs for server in servers if server.wire is not None
            ):
                if not self._stopping:
                    self._connect_due(servers, selector)
                if burst and all(s.sleeping or s.wire is None for s in servers):
                    break
                for key, _ in selector.select(self._select_timeout(servers)):
                    server = key.data
                    if server is None:
                        self._wake_reader.recv(64)
                        continue
                    done += self._serve(server, selector)
        finally:
            if self._watch is not None:
                self._watch.stop()
                self._watch = None
            for server in servers:
                if server.wire is not None:
                    server.wire.close()
            selector.close()
        return done

    def _grabs(self, server: _Server) -> bytes:
        """The GRAB_JOB_UNIQ packets that refill ``server``'s outstanding grabs to ``prefetch``."""
        wanted = 0 if self._stopping else self._depth() - server.grabs
        if self._grab_budget is not None:
            wanted = min(wanted, self._grab_budget)
            self._grab_budget -= max(wanted, 0)
        if wanted <= 0:
            return b""
        server.grabs += wanted
        return GRAB * wanted

    def _depth(self) -> int:
        if self._pace is not None:
            return self._pace.depth()
        return self.prefetch or 1

    def _select_timeout(self, servers: list[_Server]) -> float | None:
        waiting = [s.retry_at for s in servers if s.wire is None]
        if not waiting:
            return None
        return max(0.0, min(waiting) - time.monotonic())

    def _connect_due(self, servers: list[_Server], selector: selectors.BaseSelector) -> None:
        now = time.monotonic()
        for server in servers:
            if server.wire is not None or server.retry_at > now:
                continue
            try:
                wire = Wire(server.address, tls=self.tls)
                wire.send(self._hello() + self._grabs(server))
            except ConnectionFailed as exc:
                log.warning("%s; retrying in %.1fs", exc, server.delay)
                server.retry_at = now + server.delay
                server.delay = min(server.delay * 2, RECONNECT_MAX_DELAY)
                continue
            server.wire = wire
            server.sleeping = False
            server.delay = RECONNECT_FIRST_DELAY
            selector.register(wire.sock, selectors.EVENT_READ, server)

    def _hello(self) -> bytes:
        packets = [ASK_CANCEL_NOTICES]
        if self.client_id:
            packets.append(encode_packet(T.SET_CLIENT_ID, self.client_id.encode(), magic=MAGIC_REQ))
        for name, task in self.tasks.items():
            if task.timeout:
                packets.append(
                    encode_packet(
                        T.CAN_DO_TIMEOUT,
                        name.encode(),
                        b"%d" % int(task.timeout * 1000),
                        magic=MAGIC_REQ,
                    )
                )
            else:
                packets.append(encode_packet(T.CAN_DO, name.encode(), magic=MAGIC_REQ))
        return b"".join(packets)

    def _serve(self, server: _Server, selector: selectors.BaseSelector) -> int:
        """Handle what one server sent; returns the number of jobs completed."""
        wire = server.wire
        assert wire is not None
        completed = 0
        try:
            wire.read_available()
            while (packet := wire.reader.next_event()) is not None:
                assert isinstance(packet, Packet)
                kind = packet.type
                if kind is T.NO_JOB:
                    server.grabs -= 1
                    self._return_budget(1)
                    if server.grabs == 0 and not self._stopping:
                        server.sleeping = True
                        wire.send(PRE_SLEEP)
                elif kind is T.NOOP:
                    server.sleeping = False
                    wire.send(self._grabs(server))
                elif kind in (T.JOB_ASSIGN_UNIQ, T.JOB_ASSIGN):
                    server.grabs -= 1
                    started = time.perf_counter()
                    result = self._run(wire, packet)
                    if self._pace is not None:
                        self._pace.ran(time.perf_counter() - started)
                    completed += 1
                    wire.send(result + self._grabs(server))
                elif kind is T.WORK_CANCEL:
                    self._cancel_noticed(server, packet.args[0])
                elif kind is T.ERROR:
                    self._error(server, packet.args)
        except ConnectionFailed as exc:
            log.warning("%s; reconnecting", exc)
            selector.unregister(wire.sock)
            wire.close()
            self._return_budget(server.grabs)
            server.wire = None
            server.sleeping = False
            server.grabs = 0
            server.retry_at = time.monotonic() + server.delay
        return completed

    def _cancel_noticed(self, server: _Server, handle: bytes) -> None:
        if handle in self._unanswered:
            self._unanswered.discard(handle)
        else:
            self._late_cancels += 1
            log.info("job %s was cancelled on %s: its result is discarded", handle, server.address)

    def _error(self, server: _Server, args: tuple[bytes, ...]) -> None:
        code = args[0]
        if code == b"UNKNOWN_OPTION":  # gearmand: no cancel notices there
            log.debug("server %s sends no cancel notices", server.address)
        elif code == b"JOB_NOT_FOUND" and self._late_cancels:
            self._late_cancels -= 1
        else:
            log.error("server %s: %s", server.address, args)

    def _return_budget(self, grabs: int) -> None:
        """Grabs that brought no job give their share of ``max_jobs`` back."""
        if self._grab_budget is not None:
            self._grab_budget += grabs

    def _run(self, wire: Wire, packet: Packet) -> bytes:
        if packet.type is T.JOB_ASSIGN:
            handle, name, data = packet.args
            unique = b""
        else:
            handle, name, unique, data = packet.args
        job = WorkerJob(wire, handle, name, unique, data)
        task = self.tasks.get(job.function)
        if task is None:
            return encode_packet(T.WORK_FAIL, handle, magic=MAGIC_REQ)
        watch = self._watch
        if watch is not None:
            watch.job = job
        try:
            with tracking_current_job(job):
                result = _within(self.steps, 0, task.function, job)
        except JobCancelled:
            log.info("job %s (%s) stopped: it was cancelled", job.handle, job.function)
            self._unanswered.add(handle)
            return b""
        except RetryLater as exc:
            delay = b"%.3f" % max(0.0, exc.delay)
            return encode_packet(T.WORK_RETRY, handle, delay, str(exc).encode(), magic=MAGIC_REQ)
        except WorkFailed as exc:
            return encode_packet(T.WORK_EXCEPTION, handle, str(exc).encode(), magic=MAGIC_REQ)
        except Exception as exc:
            log.exception("task %s failed on job %s", job.function, job.handle)
            report = "".join(traceback.format_exception_only(exc)).strip()
            return encode_packet(T.WORK_EXCEPTION, handle, report.encode(), magic=MAGIC_REQ)
        finally:
            if watch is not None:
                watch.job = None
        if job._cancelled:  # it was told, and ran to its end anyway: nobody wants the result
            self._unanswered.add(handle)
            return b""
        if result is None:
            result = b""
        elif isinstance(result, str):
            result = result.encode()
        return encode_packet(T.WORK_COMPLETE, handle, result, magic=MAGIC_REQ)


def _within(steps: list[JobStep], first: int, function: TaskFunction, job: WorkerJob) -> Any:
    """``function(job)`` inside ``steps[first:]``, the first outermost (a plain ``with``
    per step: cheaper per job than an ExitStack)."""
    if first == len(steps):
        return function(job)
    with steps[first](job):
        return _within(steps, first + 1, function, job)
