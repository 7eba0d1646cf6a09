"""The broker: every binary packet's effect on jobs, queues and workers.

Theory of operation. A connection becomes a ``Session``. Clients submit jobs,
which get a handle and go to the tail of their function's priority queue (epoch
jobs wait on a timer first). Workers register functions, GRAB jobs, and report
WORK_* packets, which are forwarded unchanged to every client attached to the
job. A worker that found nothing sends PRE_SLEEP; the next job queued for one of
its functions wakes it with exactly one NOOP. A job whose worker disconnects,
drops the ability, or exceeds its CAN_DO_TIMEOUT goes back to the tail of its
queue with one more attempt counted, until ``job_retries`` attempts are used up;
a background job that runs out of attempts goes to the failed list.

With a durable store every change to a background job is recorded in the
journal (``journal.py``); the server writes each turn's records as one batch,
and a session promised a JOB_CREATED for a stored job is gated until that batch
is on disk. ``restore`` rebuilds the state from the store at start-up. With a
pager (``paging.py``) each queue keeps a bounded window of jobs in memory and
the rest stay in the store until a page brings them in.

Semantics are gearmand 1.1.20's wire behaviour with the 2.0 fixes (priority is
global across a worker's functions, functions are served round-robin, epoch
jobs wake sleeping workers when due) and without the bugs listed in section 9
of shared/reference/gearman-protocol.md.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from broker.core.failed import FailedList
from broker.core.journal import HANDLE_BLOCK, Journal, handle_number
from broker.core.model import CallLater, Function, Job, Session
from broker.core.paging import Pager, PageRequest
from broker.core.schedules import Schedule, iterations, parse_fields, parse_stored
from broker.core.timeline import Timeline
from broker.errors import ProtocolError
from broker.protocol.packets import (
    MAGIC_RES,
    Packet,
    PacketType,
    encode_packet,
    encode_response,
    error_packet,
)
from broker.protocol.priorities import Priority
from broker.store.base import Page, StoredState
from broker.store.operations import FailedJob, StoredJob, StoredSchedule

log = logging.getLogger("spoolgear.broker")

T = PacketType
NOOP = encode_packet(T.NOOP)
NO_JOB = encode_packet(T.NO_JOB)

# gearmand stores uniques in a 64-byte buffer; longer ones are refused.
MAX_UNIQUE_SIZE = 64
# gearmand truncates SET_CLIENT_ID to 127 bytes.
MAX_CLIENT_ID_SIZE = 127
# CAN_DO_TIMEOUT values below one second are raised to one second, as in gearmand.
MIN_JOB_TIMEOUT = 1.0
# gearmand keeps CAN_DO_TIMEOUT in a 32-bit count of milliseconds (about 24.8 days).
MAX_JOB_TIMEOUT_MS = 2**31 - 1
# Functions x priority levels a grab looks at one by one; past that it uses the index of
# functions with work, so its cost stays flat however many a worker has.
DIRECT_SCAN_LIMIT = 64
# A job timeout that finds its worker's answer possibly waiting unread looks again this soon.
TIMEOUT_RECHECK = 0.05

# (priority, background) for each plain submit type.
_SUBMITS: dict[PacketType, tuple[Priority, bool]] = {
    T.SUBMIT_JOB: (Priority.NORMAL, False),
    T.SUBMIT_JOB_BG: (Priority.NORMAL, True),
    T.SUBMIT_JOB_HIGH: (Priority.HIGH, False),
    T.SUBMIT_JOB_HIGH_BG: (Priority.HIGH, True),
    T.SUBMIT_JOB_LOW: (Priority.LOW, False),
    T.SUBMIT_JOB_LOW_BG: (Priority.LOW, True),
}


LONG_MAX = 2**63 - 1
"""Where C's strtol saturates; longer numbers from the wire stop there."""


def leading_int(text: bytes) -> int:
    """Parse like C's strtol: optional sign and leading digits, else 0; saturated at
    +-LONG_MAX, so a number of any length from the wire stays a usable value."""
    stripped = text.strip()
    start = 1 if stripped[:1] in (b"-", b"+") else 0
    end = start
    while end < len(stripped) and 48 <= stripped[end] <= 57:
        end += 1
    if end == start:
        return 0
    value = int(stripped[start:end]) if end - start <= 19 else LONG_MAX
    value = min(value, LONG_MAX)
    return -value if stripped[:1] == b"-" else value


def coalesce_key(name: bytes, unique: bytes, data: bytes) -> tuple[bytes, ...] | None:
    """The key under which submissions coalesce; ``None`` when they never do.

    Scoped by function. The unique ``-`` coalesces on the payload; an empty
    unique (or ``-`` with an empty payload) never coalesces.
    """
    if unique == b"-":
        return (name, b"-", data) if data else None
    return (name, unique) if unique else None


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """The subset of the configuration the core needs."""

    handle_prefix: bytes
    job_retries: int = 0
    worker_wakeup: int = 0
    retry_failures: Mapping[bytes, int] = field(default_factory=dict)
    """Attempts for background jobs that end in WORK_FAIL/EXCEPTION, per function
    (``b"*"`` for all, default 1); such jobs run again until then, and then go to the
    failed list: a failing background job is never silently dropped."""
    max_failed_jobs: int = 100_000
    transient: tuple[bytes, ...] = ()
    """fnmatch patterns of functions whose background jobs are never stored."""
    transient_max_queue: int = 0
    """The initial ``maxqueue`` of a transient function, per priority (0 = no limit)."""
    max_queued_bytes: int = 1 << 30
    """Payload bytes queued jobs may hold in memory in all: past it, stored jobs stay in
    the store only (paging) and others are refused with QUEUE_ERROR."""
    transient_grace: float = 10.0
    """Seconds a transient function may be without workers before it refuses jobs: a
    message nobody can take is refused, never parked (it would be lost anyway)."""


class Broker:
    """All broker state. ``call_later`` and ``clock`` are injected so tests run without a loop.

    Output is buffered per session. ``on_output`` is called when the first session
    gets something to send; the server answers by scheduling one ``flush()`` at the
    end of the event-loop turn, so everything one turn produced for a connection
    (say, results from several workers for one client) leaves in a single write.
    """

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        call_later: CallLater,
        clock: Callable[[], float] = time.time,
        on_output: Callable[[], None] | None = None,
        journal: Journal | None = None,
        pager: Pager | None = None,
    ) -> None:
        self.settings = settings
        self.call_later = call_later
        self.clock = clock
        self._started_at = clock()
        self.on_output = on_output
        self.journal = journal
        self.pager = pager
        if journal is not None:
            journal.on_first = on_output
        self.failed = FailedList(settings.max_failed_jobs, journal)
        self.gated: list[Session] = []
        self.functions: dict[bytes, Function] = {}
        # Every queue rank in use by any function, in the order GRAB looks at them.
        self.ranks: list[int] = [0, 1, 2]
        # Per rank, the functions that may have work there: a grab looks at these, not at
        # every function the worker has, so its cost does not grow with them.
        self.ready: dict[int, dict[Function, None]] = {}
        self.queued_bytes = 0
        """Payload bytes of every job in a memory queue (``max_queued_bytes``)."""
        self.jobs: dict[bytes, Job] = {}
        self.uniques: dict[tuple[bytes, ...], Job] = {}
        self.by_unique: dict[bytes, Job] = {}
        self.schedules: dict[bytes, Schedule] = {}
        self.sessions: dict[int, Session] = {}
        self.dirty: list[Session] = []
        self._next_handle = 1
        self._reserved_handles = 0
        self._handle_prefix = settings.handle_prefix + b":"
        self.timeline: Timeline[Job | Schedule] = Timeline(call_later, clock, self._on_due)
        self._handlers: dict[PacketType, Callable[[Session, Packet], None]] = {
            T.CAN_DO: self._can_do,
            T.CAN_DO_TIMEOUT: self._can_do_timeout,
            T.CANT_DO: self._cant_do,
            T.RESET_ABILITIES: self._reset_abilities,
            T.PRE_SLEEP: self._pre_sleep,
            T.GRAB_JOB: self._grab,
            T.GRAB_JOB_UNIQ: self._grab,
            T.GRAB_JOB_ALL: self._grab,
            T.WORK_STATUS: self._work_status,
            T.WORK_COMPLETE: self._work_end,
            T.WORK_FAIL: self._work_end,
            T.WORK_EXCEPTION: self._work_end,
            T.WORK_DATA: self._work_forward,
            T.WORK_WARNING: self._work_forward,
            T.GET_STATUS: self._get_status,
            T.GET_STATUS_UNIQUE: self._get_status_unique,
            T.ECHO_REQ: self._echo,
            T.OPTION_REQ: self._option,
            T.SET_CLIENT_ID: self._set_client_id,
            T.SUBMIT_JOB_EPOCH: self._submit_epoch,
            T.SUBMIT_JOB_SCHED: self._submit_sched,
            T.SUBMIT_REDUCE_JOB: self._submit_reduce,
            T.SUBMIT_REDUCE_JOB_BACKGROUND: self._submit_reduce,
        }
        for packet_type in _SUBMITS:
            self._handlers[packet_type] = self._submit_plain

    # ------------------------------------------------------------------ sessions

    def connect(self, write: Callable[[bytes], None], fd: int, host: str) -> Session:
        session = Session(write, fd, host)
        self.sessions[fd] = session
        return session

    def disconnect(self, session: Session) -> None:
        """Forget a connection: requeue what it was running, detach it from its jobs."""
        session.closed = True
        session.out.clear()
        if self.sessions.get(session.fd) is session:
            del self.sessions[session.fd]
        self._release_held(list(session.held.values()))
        for function in session.abilities:
            self._remove_worker(function, session)
        session.abilities.clear()
        session.positions.clear()
        for job in session.attached:
            job.clients = [client for client in job.clients if client is not session]
            if not job.clients and not job.background and job.worker is None:
                self._abandon(job, queued=True)
        session.attached.clear()

    def _abandon(self, job: Job, *, queued: bool) -> None:
        """A foreground job nobody waits for any more: discarded when its turn comes. Its
        payload is freed now (from the queue's byte count too, when it is ``queued``), and
        its unique (a new submission makes a new job)."""
        if queued:
            self._hold(job.function, job.priority, -len(job.data))
        job.ignored = True
        job.data = b""
        if job.coalesce_key is not None:
            del self.uniques[job.coalesce_key]
            job.coalesce_key = None

    def send(self, session: Session, data: bytes) -> None:
        if session.closed:
            return
        if not session.out:
            if not self.dirty and self.on_output is not None:
                self.on_output()
            self.dirty.append(session)
        session.out.append(data)

    def flush(self) -> None:
        """Hand every session's pending output to its transport, one write each.

        A session gated on a journal batch not yet committed keeps its output.
        """
        dirty = self.dirty
        self.dirty = []
        committed = self.journal.committed if self.journal is not None else 0
        for session in dirty:
            if session.out and not session.closed:
                if session.gate > committed:
                    self.gated.append(session)
                    continue
                data = b"".join(session.out) if len(session.out) > 1 else session.out[0]
                session.out.clear()
                session.write(data)

    def batch_committed(self, number: int) -> None:
        """Batch ``number`` is on disk: release the output that waited for it (then flush)."""
        assert self.journal is not None
        self.journal.committed = number
        if self.pager is not None:
            self.pager.committed(number)
        self.dirty.extend(self.gated)
        self.gated = []

    def refuse_gated(self, text: bytes) -> None:
        """The store failed: each session waiting for a batch to reach the disk gets an
        ERROR instead of what it waited for (never a JOB_CREATED for a job not stored)."""
        self.flush()  # this turn's output joins the gated
        for session in self.gated:
            session.out.clear()
            if not session.closed:
                session.write(error_packet(b"STORE_FAILED", text))
        self.gated = []

    def _gate(self, session: Session | None) -> None:
        if session is not None and self.journal is not None:
            session.gate = self.journal.building

    # ------------------------------------------------------------------ packets

    def handle_packet(self, session: Session, packet: Packet) -> None:
        magic, kind, _ = packet
        if magic == MAGIC_RES:
            self.send(session, error_packet(b"INVALID_MAGIC", b"Request magic expected"))
            return
        handler = self._handlers.get(kind)
        if handler is None:
            self.send(session, error_packet(b"INVALID_COMMAND", b"Command not expected"))
            return
        try:
            handler(session, packet)
        except ProtocolError as exc:
            self.send(session, error_packet(exc.code or b"INVALID_PACKET", str(exc).encode()))

    def function(self, name: bytes) -> Function:
        function = self.functions.get(name)
        if function is None:
            function = self.functions[name] = Function(name)
            if any(fnmatchcase(name, pattern) for pattern in self.settings.transient):
                function.transient = True
                function.max_queue = [self.settings.transient_max_queue] * 3
        return function

    def _new_handle(self) -> bytes:
        number = self._next_handle
        self._next_handle = number + 1
        if self.journal is not None and number + HANDLE_BLOCK // 2 >= self._reserved_handles:
            # Reserve well ahead, so the reservation is on disk long before it is used up.
            self._reserved_handles = max(self._reserved_handles, number) + HANDLE_BLOCK
            self.journal.handles_reserved(self._reserved_handles)
        return self._handle_prefix + str(number).encode()

    # ------------------------------------------------------------------ submitting

    def _submit_plain(self, session: Session, packet: Packet) -> None:
        _, kind, (name, unique, data) = packet
        priority, background = _SUBMITS[kind]
        self.submit(session, name, unique, data, priority, background)

    def _submit_reduce(self, session: Session, packet: Packet) -> None:
        name, unique, reducer, _aggregator, data = packet.args
        background = packet.type is T.SUBMIT_REDUCE_JOB_BACKGROUND
        self.submit(session, name, unique, data, Priority.NORMAL, background, reducer=reducer)

    def _submit_epoch(self, session: Session, packet: Packet) -> None:
        name, unique, epoch, data = packet.args
        self.submit(
            session, name, unique, data, Priority.NORMAL, True, when=float(leading_int(epoch))
        )

    def submit(
        self,
        session: Session | None,
        name: bytes,
        unique: bytes,
        data: bytes,
        priority: int,
        background: bool,
        *,
        when: float = 0.0,
        reducer: bytes = b"",
    ) -> Job | None:
        """Create (or coalesce onto) a job and answer JOB_CREATED.

        Returns the job; ``None`` if refused, or coalesced onto a job that is
        only in the store (paged out).
        """
        if len(unique) > MAX_UNIQUE_SIZE:
            self._refuse(session, b"ARGUMENT_TOO_LARGE", b"Unique value too large")
            return None
        key = coalesce_key(name, unique, data) if unique else None
        if key is not None:
            existing = self.uniques.get(key)
            if existing is not None:
                if session is not None:
                    if existing.background:
                        self._gate(session)  # it may have been created in this very batch
                    self.send(session, encode_response(T.JOB_CREATED, existing.handle))
                    if not background:
                        self._attach(session, existing)
                return existing
            if background and self.pager is not None:
                spilled = self._find_spilled_by_key(key)
                if spilled is not None:
                    if session is not None:
                        self._gate(session)
                        self.send(session, encode_response(T.JOB_CREATED, spilled))
                    return None
        function = self.function(name)
        if when and when <= self.clock():
            when = 0.0
        limit = function.limit(priority)
        if limit > 0 and function.total >= limit:
            self._refuse(session, b"QUEUE_ERROR", b"Job queue is full")
            return None
        if (
            not when
            and self.queued_bytes + len(data) > self.settings.max_queued_bytes
            and not self._may_spill(function, background, unique)
        ):
            self._refuse(session, b"QUEUE_ERROR", b"Job queue is full")
            return None
        if function.transient and self._unserved(function):
            self._refuse(session, b"NO_WORKERS", b"No worker serves this transient function")
            return None
        job = Job(self._new_handle(), function, unique, data, priority, background, when, reducer)
        self._index(job, key)
        if job.stored and self.journal is not None:
            self.journal.job_added(job)
            self._gate(session)
        if session is not None:
            self.send(session, encode_response(T.JOB_CREATED, job.handle))
            if not background:
                self._attach(session, job)
        if when:
            function.delayed += 1
            self.timeline.add(when, job)
        else:
            self._enqueue(job)
        return job

    def _index(self, job: Job, key: tuple[bytes, ...] | None) -> None:
        """Make a new job findable by handle, by coalescing ``key`` and by unique."""
        self.jobs[job.handle] = job
        if key is not None:
            job.coalesce_key = key
            self.uniques[key] = job
        if job.unique:
            self.by_unique[job.unique] = job  # the newest job wins, as in gearmand

    def _refuse(self, session: Session | None, code: bytes, text: bytes) -> None:
        if session is not None:
            self.send(session, error_packet(code, text))

    def _attach(self, session: Session, job: Job) -> None:
        if isinstance(job.clients, list):
            job.clients.append(session)
        else:
            job.clients = [session]
        job.ignored = False
        session.attached[job] = None

    def _enqueue(self, job: Job) -> None:
        function = job.function
        rank = job.priority
        queue = self._queue(function, rank)
        pager = self.pager
        if (
            pager is not None
            and self._spillable(job)
            and (
                function.spilled.get(rank)
                or len(queue) >= pager.window
                or function.held_bytes.get(rank, 0) >= pager.store.page_bytes
                or self.queued_bytes >= self.settings.max_queued_bytes
            )
        ):
            self._spill(job)
            return
        queue.append(job)
        self._hold(function, rank, len(job.data))
        if len(queue) == 1:  # a non-empty queue's function is marked already
            self._mark_ready(function, rank)
        self._wake(function)

    def _spillable(self, job: Job) -> bool:
        """Whether the job may live in the store only until paged in."""
        return not job.clients and self._may_spill(job.function, job.background, job.unique)

    def _may_spill(self, function: Function, background: bool, unique: bytes) -> bool:
        """Whether a job like this is stored and may wait in the store only (with a pager):
        background, of a function that is not transient, and not coalescing on its payload."""
        return self.pager is not None and background and not function.transient and unique != b"-"

    def _hold(self, function: Function, rank: int, size: int) -> None:
        """A job of ``size`` payload bytes joined (or, negative, left) a memory queue."""
        function.held_bytes[rank] = function.held_bytes.get(rank, 0) + size
        self.queued_bytes += size

    def _mark_ready(self, function: Function, rank: int) -> None:
        """``function`` may have work at ``rank`` (queued or spilled jobs); entries that
        turn out empty are dropped when a grab looks at them."""
        ready = self.ready.get(rank)
        if ready is None:
            ready = self.ready[rank] = {}
        ready[function] = None

    def _queue(self, function: Function, rank: int) -> deque[Job]:
        queue = function.queues.get(rank)
        if queue is None:
            queue = function.queues[rank] = deque()
            if rank not in self.ranks:
                bisect.insort(self.ranks, rank)
        return queue

    def _wake(self, function: Function) -> None:
        """NOOP sleeping workers of ``function``, each at most once per sleep.

        The starting worker rotates from job to job, so with ``worker_wakeup``
        limiting the NOOPs per job (and in the order NOOPs leave otherwise)
        successive jobs go round-robin over the workers.
        """
        workers = function.workers
        count = len(workers)
        if not count:
            return
        budget = self.settings.worker_wakeup or count
        start = function.wake_position % count
        for offset in range(count):
            worker = workers[(start + offset) % count]
            if worker.sleeping and not worker.noop_sent:
                worker.noop_sent = True
                self.send(worker, NOOP)
                budget -= 1
                if budget == 0:
                    function.wake_position = start + offset + 1
                    return
        function.wake_position = start + 1

    # ------------------------------------------------------------------ schedules and timers

    def _submit_sched(self, session: Session, packet: Packet) -> None:
        """Add a schedule; one with the same function and non-empty unique is the same
        schedule: the same spec and data answer its handle, others replace it."""
        name, unique, *fields, data = packet.args
        if len(unique) > MAX_UNIQUE_SIZE:
            self._refuse(session, b"ARGUMENT_TOO_LARGE", b"Unique value too large")
            return
        spec = parse_fields([field.decode("ascii", "replace") for field in fields])
        existing = next(
            (
                s
                for s in self.schedules.values()
                if unique and (s.function, s.unique) == (name, unique)
            ),
            None,
        )
        if existing is None or (existing.spec.text, existing.data) != (spec.text, data):
            next_run = spec.next_after(self.clock())  # may refuse: then nothing changed
            handle = self._new_handle() if existing is None else existing.handle
            if existing is not None:
                existing.cancelled = True
            schedule = Schedule(handle, name, unique, data, spec, next_run)
            self._add_schedule(schedule)
            self._store_schedule(schedule)
            existing = schedule
        if self.journal is not None:
            self._gate(session)
        self.send(session, encode_response(T.JOB_CREATED, existing.handle))

    def _add_schedule(self, schedule: Schedule) -> None:
        self.schedules[schedule.handle] = schedule
        self.function(schedule.function)
        self.timeline.add(schedule.next_run, schedule)

    def _store_schedule(self, schedule: Schedule) -> None:
        if self.journal is not None:
            self.journal.schedule_added(
                StoredSchedule(
                    handle_number(schedule.handle),
                    schedule.function,
                    schedule.unique,
                    schedule.data,
                    schedule.spec.text,
                    schedule.next_run,
                    schedule.fired,
                )
            )

    def _on_due(self, item: Job | Schedule, now: float) -> None:
        """A delayed job became runnable, or a schedule's time came."""
        if isinstance(item, Schedule):
            self._fire_schedule(item, now)
        elif self.jobs.get(item.handle) is item:  # not cancelled meanwhile
            item.function.delayed -= 1
            item.when = 0.0
            if self.journal is not None and item.stored:
                self.journal.job_requeued(item)  # runnable now, at the tail of its queue
            self._enqueue(item)

    def _fire_schedule(self, schedule: Schedule, now: float) -> None:
        """Create this firing's job; the schedule's next run (or its end) is recorded
        in the same batch, so a crash can neither repeat nor lose a firing."""
        if schedule.cancelled:
            return
        self.submit(None, schedule.function, schedule.unique, schedule.data, Priority.NORMAL, True)
        schedule.fired += 1
        if schedule.fired == iterations(schedule.spec):
            self.cancel(schedule.handle)
            return
        schedule.next_run = schedule.spec.next_after(now)
        self._store_schedule(schedule)
        self.timeline.add(schedule.next_run, schedule)

    # ------------------------------------------------------------------ workers

    def _can_do(self, session: Session, packet: Packet) -> None:
        self.register(session, packet.args[0], None)

    def _can_do_timeout(self, session: Session, packet: Packet) -> None:
        name, timeout_text = packet.args
        milliseconds = min(leading_int(timeout_text), MAX_JOB_TIMEOUT_MS)
        timeout = max(MIN_JOB_TIMEOUT, milliseconds / 1000) if milliseconds > 0 else None
        self.register(session, name, timeout)

    def forget_idle_functions(self, after: float) -> int:
        """Forget function names that have had no jobs and no workers for ``after``
        seconds (seen so at two sweeps that far apart), so names clients made up do not
        cost memory forever; one used again is simply created again. Returns how many."""
        now = self.clock()
        scheduled = {s.function for s in self.schedules.values() if not s.cancelled}
        forgotten = 0
        for name, function in list(self.functions.items()):
            if function.workers or function.total or function.kept or name in scheduled:
                function.idle_since = None
            elif function.idle_since is None:
                function.idle_since = now
            elif now - function.idle_since >= after:
                del self.functions[name]
                for ready in self.ready.values():
                    ready.pop(function, None)
                forgotten += 1
        return forgotten

    def _remove_worker(self, function: Function, session: Session) -> None:
        function.workers.remove(session)
        function.workers_left_at = self.clock()

    def _unserved(self, function: Function) -> bool:
        """No worker now, and none within the grace period (or since the broker started)."""
        if function.workers:
            return False
        last_seen = max(function.workers_left_at, self._started_at)
        return self.clock() - last_seen > self.settings.transient_grace

    def register(self, session: Session, name: bytes, timeout: float | None) -> None:
        function = self.function(name)
        if function not in session.positions:
            session.positions[function] = len(session.abilities)
            session.abilities.append(function)
            function.workers.append(session)
        if timeout is None:
            session.timeouts.pop(name, None)
        else:
            session.timeouts[name] = timeout

    def _cant_do(self, session: Session, packet: Packet) -> None:
        function = self.functions.get(packet.args[0])
        if function is None or function not in session.positions:
            return
        session.abilities.remove(function)
        session.positions = {ability: index for index, ability in enumerate(session.abilities)}
        self._remove_worker(function, session)
        session.timeouts.pop(function.name, None)
        self._release_held([j for j in session.held.values() if j.function is function])

    def _reset_abilities(self, session: Session, packet: Packet) -> None:
        for function in session.abilities:
            self._remove_worker(function, session)
        session.abilities.clear()
        session.positions.clear()
        session.timeouts.clear()
        self._release_held(list(session.held.values()))

    def _release_held(self, jobs: list[Job]) -> None:
        """Requeue jobs a worker gave up, most recently assigned first (as gearmand)."""
        for job in reversed(jobs):
            self.requeue(job, reason="worker gone")

    def requeue(self, job: Job, *, reason: str, limit: int | None = None) -> None:
        """Put a running job back at the tail of its queue, counting an attempt.

        Once ``limit`` attempts (default ``job_retries``; 0 = unlimited) are used
        up the job ends instead: WORK_FAIL to its clients, and a background job
        goes to the failed list.
        """
        self._detach(job)
        job.numerator = job.denominator = b"0"
        job.retries += 1
        limit = self.settings.job_retries if limit is None else limit
        if limit and job.retries >= limit:
            # One attempt needs no count: a task's own "attempt 4 of 4" stays unambiguous.
            self._give_up(
                job,
                reason if job.retries == 1 else f"{reason}; gave up after {job.retries} attempts",
            )
            return
        log.info("requeueing job %s (%s)", job.handle.decode(), reason)
        if not job.clients and not job.background:
            self._abandon(job, queued=False)  # about to be queued again
        if self.journal is not None and job.stored:
            self.journal.job_requeued(job)
        self._enqueue(job)

    def _give_up(self, job: Job, error: str) -> None:
        log.warning(
            "job %s of %s failed: %s", job.handle.decode(), job.function.name.decode(), error
        )
        if job.background:
            self._record_failure(job, error)
        self._finish(
            job,
            [(client, encode_packet(T.WORK_FAIL, job.handle)) for client in job.clients],
            stored=not job.background,
        )

    def _detach(self, job: Job) -> None:
        """Take a job away from the worker holding it."""
        worker = job.worker
        if worker is not None:
            del worker.held[job.handle]
            job.worker = None
            job.function.running -= 1
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None

    def _pre_sleep(self, session: Session, packet: Packet) -> None:
        for rank, candidates in self._candidates(session):
            for _, function in candidates:
                if function.spilled.get(rank):
                    self._refill(function, rank)
                if function.queues.get(rank):
                    session.noop_sent = True
                    self.send(session, NOOP)
                    return
        session.sleeping = True

    def _grab(self, session: Session, packet: Packet) -> None:
        session.sleeping = False
        session.noop_sent = False
        job = self._take_job(session)
        if job is None:
            if self.pager is not None and self._spilling(session):
                # Jobs wait in the store and a page is on its way: answer then, not NO_JOB.
                self.pager.parked.append((session, packet))
                return
            self.send(session, NO_JOB)
            return
        function = job.function
        job.worker = session
        function.running += 1
        session.held[job.handle] = job
        if self.journal is not None and job.stored:
            self.journal.job_running(job)
        timeout = session.timeouts.get(function.name) if session.timeouts else None
        if timeout is not None:
            job.timer = self.call_later(timeout, lambda: self._on_job_timeout(job, session))
        kind = packet.type
        if kind is T.GRAB_JOB:
            reply = encode_packet(T.JOB_ASSIGN, job.handle, function.name, job.data)
        elif kind is T.GRAB_JOB_ALL and job.reducer:
            reply = encode_packet(
                T.JOB_ASSIGN_ALL, job.handle, function.name, job.unique, job.reducer, job.data
            )
        else:
            reply = encode_packet(
                T.JOB_ASSIGN_UNIQ, job.handle, function.name, job.unique, job.data
            )
        self.send(session, reply)

    def _take_job(self, session: Session) -> Job | None:
        """Highest priority first across all the worker's functions, round-robin within one.

        A worker with few functions, at few priority levels, has them looked at directly
        (the common case, and the fastest); beyond ``DIRECT_SCAN_LIMIT`` pairs only the
        functions that may have work are (see ``_candidates``)."""
        abilities = session.abilities
        count = len(abilities)
        if count * len(self.ranks) > DIRECT_SCAN_LIMIT:
            for rank, candidates in self._candidates(session):
                for index, function in candidates:
                    job = self._pop(function, rank)
                    if job is not None:
                        session.round_robin = index + 1
                        return job
            return None
        start = session.round_robin
        for rank in self.ranks:
            for offset in range(count):
                index = (start + offset) % count
                function = abilities[index]
                if not function.queues.get(rank) and not function.spilled.get(rank):
                    continue  # the usual case, without a call
                job = self._pop(function, rank)
                if job is not None:
                    session.round_robin = index + 1
                    return job
        return None

    def _spilling(self, session: Session) -> bool:
        """Whether jobs of the worker's functions wait in the store (a page may come)."""
        return any(
            function.spilled.get(rank)
            for rank, candidates in self._candidates(session)
            for _, function in candidates
        )

    def _candidates(self, session: Session) -> Iterator[tuple[int, Iterator[tuple[int, Function]]]]:
        """Per rank in priority order, the worker's functions that may have work there, in
        round-robin order from where it left off. Each rank costs the smaller of its
        ready functions and the worker's functions, never their product."""
        count = len(session.abilities)
        if count == 0:
            return
        for rank in self.ranks:
            ready = self.ready.get(rank)
            if ready:
                yield rank, self._ready_abilities(session, rank, ready, count)

    def _ready_abilities(
        self, session: Session, rank: int, ready: dict[Function, None], count: int
    ) -> Iterator[tuple[int, Function]]:
        start = session.round_robin
        positions = session.positions
        if len(ready) < count:
            mine = [
                (index, function)
                for function in list(ready)
                if (index := positions.get(function)) is not None
            ]
            mine.sort(key=lambda pair: (pair[0] - start) % count)
        else:
            abilities = session.abilities
            mine = [
                (index, abilities[index])
                for offset in range(count)
                if abilities[index := (start + offset) % count] in ready
            ]
        for index, function in mine:
            if function.queues.get(rank) or function.spilled.get(rank):
                yield index, function
            else:
                ready.pop(function, None)  # nothing there any more

    def _pop(self, function: Function, rank: int) -> Job | None:
        """The next runnable job of one queue (asking for a page when it runs low)."""
        if function.spilled.get(rank):  # dict.get: no __missing__ call per grab
            self._refill(function, rank)
        queue = function.queues.get(rank)
        while queue:
            job = queue.popleft()
            self._hold(function, rank, -len(job.data))
            if job.ignored:
                self._forget(job)
                continue
            return job
        return None

    def _on_job_timeout(self, job: Job, worker: Session, *, first: bool = True) -> None:
        job.timer = None
        if first and job.worker is worker and worker.has_input():
            # The answer may be in there (the broker was paused, say): read it first, once.
            job.timer = self.call_later(
                TIMEOUT_RECHECK, lambda: self._on_job_timeout(job, worker, first=False)
            )
            return
        if job.worker is worker and self.jobs.get(job.handle) is job:
            log.warning("job %s exceeded its CAN_DO_TIMEOUT", job.handle.decode())
            self.requeue(job, reason="timeout")

    # ------------------------------------------------------------------ work results

    def _owned_job(self, session: Session, handle: bytes, text: bytes) -> Job | None:
        job = session.held.get(handle)
        if job is None:
            self.send(session, error_packet(b"JOB_NOT_FOUND", text))
        return job

    def _work_status(self, session: Session, packet: Packet) -> None:
        handle, numerator, denominator = packet.args
        job = self._owned_job(session, handle, b"Job given in work result not found")
        if job is None:
            return
        job.numerator = b"%d" % leading_int(numerator)
        job.denominator = b"%d" % leading_int(denominator)
        if job.clients:
            data = encode_packet(T.WORK_STATUS, *packet.args)
            for client in job.clients:
                self.send(client, data)

    def _work_forward(self, session: Session, packet: Packet) -> None:
        job = self._owned_job(session, packet.args[0], b"Job does not exist on server")
        if job is not None and job.clients:
            data = encode_packet(packet.type, *packet.args)
            for client in job.clients:
                self.send(client, data)

    def _work_end(self, session: Session, packet: Packet) -> None:
        kind = packet.type
        if kind is T.WORK_EXCEPTION:
            text = b"An exception was received for a job that does not exist"
        else:
            text = b"Job given in work result not found"
        job = self._owned_job(session, packet.args[0], text)
        if job is None:
            return
        if kind is not T.WORK_COMPLETE and job.background:
            # Run again while attempts are left, then keep it in the failed list.
            error = (
                packet.args[1].decode("utf-8", "replace")
                if kind is T.WORK_EXCEPTION
                else "WORK_FAIL"
            )
            self.requeue(
                job,
                reason=error or "WORK_EXCEPTION",
                limit=self._failure_attempts(job.function.name),
            )
            return
        data = encode_packet(kind, *packet.args)
        if kind is T.WORK_EXCEPTION:
            fail = encode_packet(T.WORK_FAIL, job.handle)
            self._finish(job, [(c, data if c.exceptions else fail) for c in job.clients])
        else:
            self._finish(job, [(client, data) for client in job.clients])

    def _failure_attempts(self, name: bytes) -> int:
        retries = self.settings.retry_failures
        return retries.get(name) or retries.get(b"*", 1) if retries else 1

    def _finish(
        self, job: Job, replies: list[tuple[Session, bytes]], *, stored: bool = True
    ) -> None:
        """End a job: send the final packets, then remove every trace of it
        (from the store too, unless ``stored`` is false because that was done)."""
        for client, data in replies:
            self.send(client, data)
        self._detach(job)
        if stored and job.stored and self.journal is not None:
            self.journal.job_ended(job)
        self._forget(job)

    def _forget(self, job: Job) -> None:
        del self.jobs[job.handle]
        if job.when:
            job.data = b""  # still on the timeline until its time: keep no payload there
        if job.coalesce_key is not None:
            del self.uniques[job.coalesce_key]
        if job.unique and self.by_unique.get(job.unique) is job:
            self._reindex_unique(job.unique)
        for client in job.clients:
            client.attached.pop(job, None)
        job.clients = ()

    def _reindex_unique(self, unique: bytes) -> None:
        """GET_STATUS_UNIQUE is not scoped by function: after the indexed job ends,
        point at another live job with the same unique, if any."""
        del self.by_unique[unique]
        for name in self.functions:
            other = self.uniques.get((name, unique))
            if other is not None:
                self.by_unique[unique] = other
                return

    def cancel(self, handle: bytes) -> bool:
        """Admin ``cancel job``: remove a queued, delayed or running job, failing its clients."""
        schedule = self.schedules.pop(handle, None)
        if schedule is not None:
            schedule.cancelled = True
            if self.journal is not None:
                self.journal.schedule_removed(handle)
            return True
        job = self.jobs.get(handle)
        if job is None:
            return self._cancel_spilled(handle)
        if job.worker is None:
            if self._is_delayed(job):
                job.function.delayed -= 1
            else:
                job.function.queues[job.priority].remove(job)
                self._hold(job.function, job.priority, -len(job.data))
        self._finish(
            job, [(client, encode_packet(T.WORK_FAIL, job.handle)) for client in job.clients]
        )
        return True

    def _is_delayed(self, job: Job) -> bool:
        return job.when > 0.0

    # ------------------------------------------------------------------ the failed list

    def _record_failure(self, job: Job, error: str) -> None:
        self.failed.add(
            job.handle,
            FailedJob(
                handle_number(job.handle),
                job.function.name,
                job.unique,
                job.data,
                job.priority,
                job.retries,
                error,
                self.clock(),
            ),
        )

    def retry_failed(self, handle: bytes | None) -> int:
        """Queue failed jobs again as new background jobs (all when ``handle`` is None)."""
        handles = self.failed.select(handle)
        for failed_handle in handles:
            record = self.failed.pop(failed_handle)
            self.submit(None, record.function, record.unique, record.data, record.priority, True)
        return len(handles)

    def drop_failed(self, handle: bytes | None) -> int:
        handles = self.failed.select(handle)
        for failed_handle in handles:
            self.failed.pop(failed_handle)
        return len(handles)

    # ------------------------------------------------------------------ start-up

    def restore(self, state: StoredState) -> None:
        """Rebuild jobs, schedules and the failed list from the store, before serving.

        Jobs come back in their stored (priority, order). A job that was running
        when the broker stopped counts that as an attempt and goes to the tail.
        """
        now = self.clock()
        self._next_handle = self._reserved_handles = state.next_number
        for queue in state.spilled:
            assert self.pager is not None, "only a paging broker loads windows"
            function = self.function(queue.function)
            self._queue(function, queue.priority)
            function.spilled[queue.priority] = queue.count
            self._mark_ready(function, queue.priority)
            self.pager.first_seq[(queue.function, queue.priority)] = queue.first_seq
        interrupted = []
        for stored in state.jobs:
            function = self.function(stored.function)
            job = self._adopt(function, stored, stored.run_at if stored.run_at > now else 0.0)
            if stored.running:
                interrupted.append(job)
            elif job.when:
                function.delayed += 1
                self.timeline.add(job.when, job)
            else:
                self._queue(function, job.priority).append(job)
                self._hold(function, job.priority, len(job.data))
                self._mark_ready(function, job.priority)
        for job in interrupted:
            self.requeue(job, reason="interrupted by a broker restart")
        for stored_schedule in state.schedules:
            self._restore_schedule(stored_schedule, now)
        for failed in state.failed:
            self.failed.restore(self._stored_handle(failed.number), failed)

    def _restore_schedule(self, stored: StoredSchedule, now: float) -> None:
        """Missed-firing policy: firings that fell into the downtime coalesce into
        one run at start-up, then the schedule resumes from now."""
        spec = parse_stored(stored.spec)
        # A past next run is due at once; 0 was written before next runs were stored.
        schedule = Schedule(
            self._stored_handle(stored.number),
            stored.function,
            stored.unique,
            stored.data,
            spec,
            stored.next_run or spec.next_after(now),
            stored.fired,
        )
        self._add_schedule(schedule)

    def _stored_handle(self, number: int) -> bytes:
        return self._handle_prefix + b"%d" % number

    def _adopt(self, function: Function, stored: StoredJob, when: float) -> Job:
        """A job object, indexed, for a job read from the store."""
        job = Job(
            self._stored_handle(stored.number),
            function,
            stored.unique,
            stored.data,
            stored.priority,
            True,
            when,
            stored.reducer,
        )
        job.retries = stored.attempts
        key = coalesce_key(stored.function, stored.unique, stored.data)
        self._index(job, None if key in self.uniques else key)
        return job

    # ------------------------------------------------------------------ paging

    def _spill(self, job: Job) -> None:
        """Leave a just-journaled job to the store only: its queue is full."""
        assert self.pager is not None and self.journal is not None
        function, priority = job.function, job.priority
        if not function.spilled[priority]:
            self.pager.first_seq[(function.name, priority)] = self.journal.last_seq
            self._mark_ready(function, priority)
        function.spilled[priority] += 1
        if job.coalesce_key is not None:
            self.pager.remember(job.coalesce_key, self.journal.building, job.handle)
        self._forget(job)

    def _refill(self, function: Function, priority: int) -> None:
        """Ask for a page once a spilling queue is down to half its window (in jobs and
        in payload bytes)."""
        assert self.pager is not None
        held = len(self._queue(function, priority))
        window = self.pager.window
        if (
            function.spilled[priority]
            and held <= window // 2
            and function.held_bytes.get(priority, 0) <= self.pager.store.page_bytes // 2
            and self.pager.want_page((function.name, priority), window - held)
            and self.on_output is not None
        ):
            self.on_output()  # end the turn, where the committer sends the request out

    def take_page_requests(self) -> list[PageRequest]:
        """The pages to read after the batch being taken now (see ``paging.py``)."""
        if self.pager is None or not self.pager.requests:
            return []
        requests, self.pager.requests = self.pager.requests, []
        for request in requests:
            request.expected = self.functions[request.function].spilled[request.priority]
        return requests

    def paged_in(self, request: PageRequest, page: Page) -> None:
        """Queue a page of jobs read from the store, skipping any cancelled meanwhile."""
        assert self.pager is not None
        function, priority = self.functions[request.function], request.priority
        queue = self._queue(function, priority)
        vanished = self.pager.vanished
        rows = page.rows
        added = 0
        for row in rows:
            if row.number in vanished or self._stored_handle(row.number) in self.jobs:
                continue
            queue.append(self._adopt(function, row, 0.0))
            self._hold(function, priority, len(row.data))
            added += 1
        if added:
            self._mark_ready(function, priority)
        # The last page holds the rest of the jobs counted when the request left.
        consumed = added if page.more else request.expected
        function.spilled[priority] = max(0, function.spilled[priority] - consumed)
        self.pager.paged((function.name, priority), rows[-1].seq if rows else None)
        if added:
            self._wake(function)
        self._refill(function, priority)
        parked, self.pager.parked = self.pager.parked, []
        for session, grab in parked:
            if not session.closed:
                self._grab(session, grab)

    def _spilled_row(self, row: StoredJob | None) -> StoredJob | None:
        """``row`` if it is a spilled job (not one in memory or already ended)."""
        if row is None or self.pager is None:
            return None
        function = self.functions.get(row.function)
        if function is None or not self.pager.is_spilled(row, function.spilled[row.priority]):
            return None
        return row

    def _find_spilled(self, handle: bytes) -> StoredJob | None:
        prefix = self._handle_prefix
        if self.pager is None or not handle.startswith(prefix):
            return None
        number = handle[len(prefix) :]
        if not number.isdigit() or len(number) > 18:  # no handle number is that long
            return None
        return self._spilled_row(self.pager.store.find(int(number)))

    def _find_spilled_by_key(self, key: tuple[bytes, ...]) -> bytes | None:
        """The handle of a spilled job a background submission coalesces onto."""
        assert self.pager is not None
        recent = self.pager.recent.get(key)
        if recent is not None:
            return recent[1]
        function = self.functions.get(key[0])
        if len(key) != 2 or function is None or not function.has_spilled:
            return None  # the unique "-" (coalescing on the payload) never spills
        row = self._spilled_row(self.pager.store.find_unique(key[1], key[0]))
        return None if row is None else self._stored_handle(row.number)

    def _cancel_spilled(self, handle: bytes) -> bool:
        row = self._find_spilled(handle)
        if row is None:
            return False
        assert self.pager is not None and self.journal is not None
        self.functions[row.function].spilled[row.priority] -= 1
        self.pager.vanished[row.number] = ((row.function, row.priority), row.seq)
        self.journal.stored_job_ended(row.number)
        return True

    # ------------------------------------------------------------------ status and misc

    def _get_status(self, session: Session, packet: Packet) -> None:
        handle = packet.args[0]
        job = self.jobs.get(handle)
        if job is None:
            known = b"0" if self._find_spilled(handle) is None else b"1"
            reply = encode_packet(T.STATUS_RES, handle, known, b"0", b"0", b"0")
        else:
            running = b"1" if job.worker is not None else b"0"
            reply = encode_packet(
                T.STATUS_RES, handle, b"1", running, job.numerator, job.denominator
            )
        self.send(session, reply)

    def _get_status_unique(self, session: Session, packet: Packet) -> None:
        unique = packet.args[0]
        job = self.by_unique.get(unique)
        if job is None:
            spilled = None
            if self.pager is not None and unique:
                spilled = self._spilled_row(self.pager.store.find_unique(unique, None))
            known = b"0" if spilled is None else b"1"
            reply = encode_packet(T.STATUS_RES_UNIQUE, unique, known, b"0", b"0", b"0", b"0")
        else:
            running = b"1" if job.worker is not None else b"0"
            reply = encode_packet(
                T.STATUS_RES_UNIQUE,
                unique,
                b"1",
                running,
                job.numerator,
                job.denominator,
                b"%d" % len(job.clients),
            )
        self.send(session, reply)

    def _echo(self, session: Session, packet: Packet) -> None:
        self.send(session, encode_packet(T.ECHO_RES, packet.args[0]))

    def _option(self, session: Session, packet: Packet) -> None:
        name = packet.args[0]
        if name.lower() == b"exceptions":
            session.exceptions = True
            self.send(session, encode_packet(T.OPTION_RES, name))
        else:
            self.send(
                session, error_packet(b"UNKNOWN_OPTION", b"Server does not recognize given option")
            )

    def _set_client_id(self, session: Session, packet: Packet) -> None:
        session.client_id = packet.args[0][:MAX_CLIENT_ID_SIZE] or b"-"

    def has_jobs(self) -> bool:
        return bool(self.jobs) or any(f.has_spilled for f in self.functions.values())
