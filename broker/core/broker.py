"""The broker: every binary packet's effect on jobs, and the life of a job.

Theory of operation. A connection becomes a ``Session``. Clients submit jobs,
which get a handle and go to the tail of their function's priority queue (epoch
jobs wait on a timer first). Workers register functions, GRAB jobs, and report
WORK_* packets, which are forwarded unchanged to every client attached to the
job. A worker that found nothing sends PRE_SLEEP; the next job queued for one of
its functions wakes it with exactly one NOOP. A job whose worker disconnects,
drops the ability, or exceeds its CAN_DO_TIMEOUT goes back to the tail of its
queue with one more attempt counted, until ``job_retries`` attempts are used up;
a background job that runs out of attempts goes to the failed list.

Around it, each with one job: replies leave through ``output.py``; functions,
their queues and workers and the choice of the next job are ``functions.py``;
what a worker can do is ``abilities.py``; progress reports are ``progress.py``;
schedules are ``schedules.py``; the failed list is ``failed.py``; with a durable
store every change to a background job is recorded in the journal
(``journal.py``), and with a paging store each queue keeps a bounded window in
memory (``paging.py``). ``restore.py`` rebuilds the state at start-up.

The commit cycle is two calls: ``take_batch`` hands over what to write (the
journal's operations and the pages to read after them), ``apply_batch`` takes
the written batch back (releasing the replies it gated, queueing the pages). The
server's committer and the unit tests' harness make the same two calls.

Semantics are gearmand 1.1.20's wire behaviour with the 2.0 fixes (priority is
global across a worker's functions, functions are served round-robin, epoch
jobs wake sleeping workers when due) and without the gearmand bugs
listed in docs/gearmand.md.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from broker.core.abilities import Abilities
from broker.core.failed import FailedList
from broker.core.functions import Functions
from broker.core.handles import Handles
from broker.core.index import JobIndex, coalesce_key
from broker.core.journal import Journal, NullJournal
from broker.core.model import Accepted, CallLater, Function, Job, Refused, Session, Submitted
from broker.core.other_brokers import OtherBrokers
from broker.core.output import Output
from broker.core.paging import Pager, PageRequest, Paging
from broker.core.permissions import refusal
from broker.core.progress import Progress, owned_job
from broker.core.queries import Queries
from broker.core.results import CANCELLED, FAILED, SUCCESSFUL, ResultBook
from broker.core.schedules import Schedule, Scheduler
from broker.core.settings import BrokerSettings
from broker.core.timeline import Timeline
from broker.core.workflows import MAX_AFTER, MODES, Workflows
from broker.errors import ProtocolError, StoreUnavailable
from broker.protocol.numbers import leading_int, seconds
from broker.protocol.packets import (
    MAGIC_RES,
    MAX_KEY,
    Packet,
    PacketType,
    encode_packet,
    encode_response,
    error_packet,
)
from broker.protocol.priorities import MAX_RANK, MIN_RANK, Priority
from broker.protocol.reader import AdminLine, PacketReader
from broker.store.base import Page, PagingStore, SharedStore
from broker.store.operations import KeptResult, Operation, StoredJob

log = logging.getLogger("spoolgear.broker")

T = PacketType
NO_JOB = encode_packet(T.NO_JOB)

# gearmand stores uniques in a 64-byte buffer; longer ones are refused.
MAX_UNIQUE_SIZE = 64
# A job timeout that finds its worker's answer possibly waiting unread looks again this soon.
TIMEOUT_RECHECK = 0.05
# How a worker's Python traceback starts, where a failure report carries one.
WORKER_TRACEBACK = "Traceback (most recent call last):"

# (priority, background) for each plain submit type.
_SUBMITS: dict[PacketType, tuple[Priority, bool]] = {
    T.SUBMIT_JOB: (Priority.NORMAL, False),
    T.SUBMIT_JOB_BG: (Priority.NORMAL, True),
    T.SUBMIT_JOB_HIGH: (Priority.HIGH, False),
    T.SUBMIT_JOB_HIGH_BG: (Priority.HIGH, True),
    T.SUBMIT_JOB_LOW: (Priority.LOW, False),
    T.SUBMIT_JOB_LOW_BG: (Priority.LOW, True),
}


@dataclass(slots=True)
class Batch:
    """What one store transaction writes, and the pages to read right after it."""

    number: int
    operations: list[Operation]
    page_requests: list[PageRequest]


class Broker:
    """All broker state. ``call_later`` and ``clock`` are injected so tests run without a
    loop. Nothing calls out of it: whoever feeds it (a packet, a timer, a written batch)
    ends the turn with ``flush()`` and offers ``take_batch()`` to the store."""

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        call_later: CallLater,
        clock: Callable[[], float] = time.time,
        journal: Journal | None = None,
        paging_store: PagingStore | None = None,
        window: int = 0,
    ) -> None:
        self.settings = settings
        self.call_later = call_later
        self.clock = clock
        self.timing = settings.job_timing
        self.journal = NullJournal() if journal is None else journal
        self.output = Output()
        self.send = self.output.send
        self.flush = self.output.flush
        self.handles = Handles(settings.handle_prefix, self.journal.handles_reserved)
        self.functions = Functions(
            settings,
            clock=clock,
            send=self.send,
            forget=self._forget,
            journal=self.journal,
            call_later=call_later,
        )
        self.flow = self.functions.flow
        self.index = JobIndex(self.functions.by_name)
        self.pager: Paging = Paging()
        if paging_store is not None and window:
            self.pager = Pager(
                paging_store,
                window,
                functions=self.functions.by_name,
                handles=self.handles,
                journal=self.journal,
            )
        self.functions.paging = self.pager
        self.failed = FailedList(settings.max_failed_jobs, self.journal)
        self.results = ResultBook(settings, self.journal, clock)
        self.workflows = Workflows(self.handles)
        self._ended_parents: deque[tuple[Job, str, str]] = deque()
        """Jobs whose end the jobs waiting for them are still to hear of."""
        self.scheduler = Scheduler(
            journal=self.journal,
            handles=self.handles,
            call_later=call_later,
            clock=clock,
            fire=self._fire_schedule,
        )
        self.other_brokers = OtherBrokers(
            paging_store if isinstance(paging_store, SharedStore) else None, self.handles
        )
        queries = Queries(self.index, self.pager, self.other_brokers, self.send)
        progress = Progress(self.send)
        self.abilities = Abilities(self.functions, self.send, self._release_held)
        self.sessions: dict[int, Session] = {}
        self.timeline: Timeline[Job] = Timeline(call_later, clock, self._due)
        self.leased = self.other_brokers.store is not None
        """Whether this broker holds a lease on a shared store (the grab path checks it)."""
        self.lease_deadline = math.inf
        """With a shared store: until when (``time.monotonic()``) the lease surely holds;
        the committer moves it after each write."""
        self.renewal_wanted = False
        """A job was handed out past ``lease_deadline``: write, if only to renew."""
        self._handlers: dict[PacketType, Callable[[Session, Packet], None]] = {
            T.CAN_DO: self.abilities.can_do,
            T.CAN_DO_TIMEOUT: self.abilities.can_do_timeout,
            T.CANT_DO: self.abilities.cant_do,
            T.RESET_ABILITIES: self.abilities.reset,
            T.PRE_SLEEP: self.abilities.pre_sleep,
            T.GRAB_JOB: self._grab,
            T.GRAB_JOB_UNIQ: self._grab,
            T.GRAB_JOB_ALL: self._grab,
            T.WORK_STATUS: progress.status,
            T.WORK_COMPLETE: self._work_end,
            T.WORK_FAIL: self._work_end,
            T.WORK_EXCEPTION: self._work_end,
            T.WORK_DATA: progress.forward,
            T.WORK_WARNING: progress.forward,
            T.GET_STATUS: queries.get_status,
            T.GET_STATUS_UNIQUE: queries.get_status_unique,
            T.ECHO_REQ: queries.echo,
            T.OPTION_REQ: queries.option,
            T.SET_CLIENT_ID: queries.set_client_id,
            T.SUBMIT_JOB_EPOCH: self._submit_epoch,
            T.SUBMIT_JOB_RANKED: self._submit_ranked,
            T.WORK_RETRY: self._work_retry,
            T.SUBMIT_JOB_KEYED: self._submit_keyed,
            T.SUBMIT_JOB_AFTER: self._submit_after,
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
        self.abilities.forget(session)
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
            self.functions.hold(job.function, job.priority, -len(job.data))
        job.ignored = True
        job.data = b""
        self.index.stop_coalescing(job)

    # ------------------------------------------------------------------ the commit cycle

    def batch_waiting(self) -> bool:
        """Whether there is something to write or pages to read."""
        return bool(self.journal.ops) or self.pager.wants_pages() or self.renewal_wanted

    def commit_awaited(self) -> bool:
        """Whether a reply or a page waits for the batch being built. If none does (the
        batch only records jobs handed out and finished), its commit may wait a little
        and carry more (``--lazy-commit-delay``)."""
        return (
            self.output.awaited > self.output.committed
            or self.pager.wants_pages()
            or self.renewal_wanted
        )

    def take_batch(self) -> Batch:
        """The operations journaled since the last batch, and the pages to read after
        them; replies gated on this batch wait until ``apply_batch``."""
        number, operations = self.journal.take()
        self.renewal_wanted = False
        return Batch(number, operations, self.pager.take_requests())

    def apply_batch(
        self, batch: Batch, pages: Sequence[Page], coalesced: dict[int, int] | None = None
    ) -> None:
        """``batch`` is written and its pages read: settle the jobs that waited for it
        (``coalesced``: those a shared store already had under their unique, see
        ``other_brokers.py``), release the replies it gated, queue the pages (answering the
        grabs that waited for them), and write the replies."""
        ready, dropped = self.other_brokers.committed(batch.number, coalesced or {})
        for job in dropped:
            fail = encode_packet(T.WORK_FAIL, job.handle)
            self._finish(job, [(client, fail) for client in job.clients], stored=False)
        for job in ready:
            self._place(job)
        self.output.release(batch.number)
        self.pager.committed(batch.number)
        for request, page in zip(batch.page_requests, pages, strict=True):
            self._page_arrived(request, page)
        for session, grab in self.pager.unpark():
            if not session.closed:
                self._grab(session, grab)
        self.flush()

    def refuse_gated(self, text: bytes) -> None:
        """The store failed: what waited for a batch gets an ERROR (``output.py``)."""
        self.output.refuse_gated(text)

    # ------------------------------------------------------------------ packets

    def handle_stream(self, session: Session, reader: PacketReader) -> tuple[int, AdminLine | None]:
        """Handle the complete packets ``reader`` holds, in this compiled loop rather than
        the connection's (the hot path of a pipelining client). Returns how many were
        handled and the admin line it stopped at (for the admin layer above), if any;
        a ``ProtocolError`` of the stream itself propagates."""
        handled = 0
        while not session.closed:
            event = reader.next_event()
            if event is None:
                break
            handled += 1
            if not isinstance(event, Packet):
                return handled, event
            self.handle_packet(session, event)
        return handled, None

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
        except StoreUnavailable as exc:  # a look-up in a store on the network failed
            self.send(session, error_packet(b"STORE_UNAVAILABLE", str(exc).encode()))

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

    def _submit_ranked(self, session: Session, packet: Packet) -> None:
        name, unique, rank_text, epoch, data = packet.args
        self._submit_at_rank(session, name, unique, b"", rank_text, epoch, data)

    def _submit_keyed(self, session: Session, packet: Packet) -> None:
        name, unique, key, rank_text, epoch, data = packet.args
        if len(key) > MAX_KEY:
            text = b"Concurrency key longer than %d bytes" % MAX_KEY
            self._refuse(session, b"ARGUMENT_TOO_LARGE", text)
            return
        self._submit_at_rank(session, name, unique, key, rank_text, epoch, data)

    def _submit_after(self, session: Session, packet: Packet) -> None:
        name, unique, after_text, data = packet.args
        mode, *handles = after_text.split() or [b""]
        numbers = [self.handles.number(handle) for handle in handles]
        if mode not in MODES or not 0 < len(handles) <= MAX_AFTER:
            text = b"After must be chain or group and 1 to %d job handles" % MAX_AFTER
            self._refuse(session, b"INVALID_ARGUMENTS", text)
        elif unique:
            self._refuse(
                session, b"INVALID_ARGUMENTS", b"A job that runs after others has no unique"
            )
        elif not self.results.enabled:
            text = b"Chains and groups pass results: the broker keeps none (--keep-results 0)"
            self._refuse(session, b"NO_RESULTS", text)
        else:
            for handle, number in zip(handles, numbers, strict=True):
                job = self.index.jobs.get(handle)
                known = job.background if job is not None else self._ended(handle) is not None
                if number is None or not (known or self.pager.find(handle) is not None):
                    text = b"No background job %s here, held or with its result kept" % handle
                    self._refuse(session, b"UNKNOWN_JOB", text)
                    return
            given = [b"%d" % number for number in numbers if number is not None]
            after = b" ".join([mode, *given])
            self.submit(session, name, b"", data, Priority.NORMAL, True, after=after)

    def _ended(self, handle: bytes) -> KeptResult | None:
        """How a job that is no longer held ended, as kept here or in a shared store."""
        return self.results.find(handle) or self.other_brokers.result(handle)

    def _held(self, handle: bytes) -> bool:
        """Whether this broker holds the job, in memory or only in its store."""
        return handle in self.index.jobs or self.pager.find(handle) is not None

    def link_and_settle(self, job: Job, *, stored_waiting: bool) -> None:
        """A job that runs after others: make it wait for those still held, then stop it
        (a chain it belongs to failed), leave it waiting, or let it run. ``stored_waiting``:
        the store has it waiting (a restart, a takeover), so running it is written."""
        self.workflows.link(job, self._held, self._ended)
        self._settle(job, stored_waiting=stored_waiting)

    def _settle(self, job: Job, *, stored_waiting: bool) -> None:
        """A linked job that runs after others: stopped, waiting, or free to run."""
        if job.stopped:
            self._stop(job)
        elif job.waiting:
            job.function.delayed += 1
        elif stored_waiting:
            self.journal.job_requeued(job)
            self._enqueue(job)
        else:
            self._place(job)

    def _stop(self, job: Job) -> None:
        """A job whose chain stopped before it ran: failed, with why."""
        self.results.never_ran(job, job.stopped)
        self._give_up(job, job.stopped)

    def _parent_ended(self, job: Job, status: str, error: str) -> None:
        """Release or stop the jobs that waited for ``job``. A stopped job ends too, and
        what waits for it is settled by the same loop, not by recursion: a long chain that
        stops at its first step is a long walk, not a deep stack."""
        ended = self._ended_parents
        ended.append((job, status, error))
        if len(ended) > 1:
            return  # the loop below, running further up the stack, takes it
        while ended:
            parent, parent_status, parent_error = ended[0]
            for child in self.workflows.ended(parent, parent_status, parent_error):
                child.function.delayed -= 1
                if child.stopped:
                    self._stop(child)  # ends it: it joins ``ended``
                    continue
                if self.timing:
                    child.since = self.clock()
                if child.stored:
                    self.journal.job_requeued(child)
                self._enqueue(child)
            ended.popleft()

    def _submit_at_rank(
        self,
        session: Session,
        name: bytes,
        unique: bytes,
        key: bytes,
        rank_text: bytes,
        epoch: bytes,
        data: bytes,
    ) -> None:
        rank = leading_int(rank_text)
        if not MIN_RANK <= rank <= MAX_RANK:
            text = b"Rank must be between %d and %d" % (MIN_RANK, MAX_RANK)
            self._refuse(session, b"INVALID_ARGUMENTS", text)
            return
        when = float(leading_int(epoch))
        self.submit(session, name, unique, data, rank, True, when=when, concurrency_key=key)

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
        concurrency_key: bytes = b"",
        after: bytes = b"",
    ) -> Submitted:
        """Create (or coalesce onto) a job; ``session``, if given, gets the answer
        (JOB_CREATED, gated on the batch that makes the job durable, or an ERROR)."""
        if (
            session is not None
            and session.permits is not None
            and not session.permits.allows("submit", name)
        ):
            return self._deny(session, "submit", name)
        if len(unique) > MAX_UNIQUE_SIZE:
            return self._refuse(session, b"ARGUMENT_TOO_LARGE", b"Unique value too large")
        key = coalesce_key(name, unique, data) if unique else None
        if key is not None:
            existing = self.index.uniques.get(key)
            if existing is not None:
                # A background job may have been created in this very batch.
                building = self.journal.building if existing.background else 0
                accepted = self._accept(session, existing.handle, building)
                if background:
                    self.other_brokers.replied(existing, session)
                elif session is not None:
                    self._attach(session, existing)
                return accepted
            if background:
                spilled = self.pager.find_by_key(key)
                if spilled is not None:
                    return self._accept(session, spilled, self.journal.building)
        function = self.functions.get(name)
        if when and when <= self.clock():
            when = 0.0
        limit = function.limit(priority)
        if limit > 0 and function.total >= limit:
            return self._refuse(session, b"QUEUE_ERROR", b"Job queue is full")
        if (
            not when
            and self.functions.queued_bytes + len(data) > self.settings.max_queued_bytes
            and not self.pager.may_spill(function, background, unique)
        ):
            return self._refuse(session, b"QUEUE_ERROR", b"Job queue is full")
        if function.transient and self.functions.unserved(function):
            return self._refuse(session, b"NO_WORKERS", b"No worker serves this transient function")
        job = Job(self.handles.new(), function, unique, data, priority, background, when, reducer)
        job.key = concurrency_key
        function.submitted += 1
        self.results.submitted(job)
        self.index.add(job, key)
        if after:
            job.after = after
            self.workflows.link(job, self._held, self._ended)
        building = 0
        if job.stored:
            self.journal.job_added(job)
            building = self.journal.building
        accepted = self._accept(session, job.handle, building)
        if session is not None and not background:
            self._attach(session, job)
        if building and self.other_brokers.must_hold(key):
            self.other_brokers.hold(job, building)  # until the store says it is the only one
            self.other_brokers.replied(job, session)
        elif after:
            self._settle(job, stored_waiting=False)
        else:
            self._place(job)
        return accepted

    def _place(self, job: Job) -> None:
        """A new job joins its queue, or the timeline if it is delayed."""
        if job.when:
            self.defer(job)
        else:
            if self.timing:
                job.since = self.clock()
            self._enqueue(job)

    def _accept(self, session: Session | None, handle: bytes, batch: int) -> Accepted:
        if session is not None:
            if batch:
                self.output.gate(session, batch)
            self.send(session, encode_response(T.JOB_CREATED, handle))
        return Accepted(handle, batch)

    def _deny(self, session: Session, action: str, name: bytes) -> Refused:
        text = refusal(action, name, session.host, session.names)
        return self._refuse(session, b"PERMISSION_DENIED", text)

    def _refuse(self, session: Session | None, code: bytes, text: bytes) -> Refused:
        if session is not None:
            self.send(session, error_packet(code, text))
        return Refused(code, text)

    def adopt(self, function: Function, stored: StoredJob, when: float) -> Job:
        """A job object, indexed, for a job read from the store."""
        job = Job(
            self.handles.of(stored.number),
            function,
            stored.unique,
            stored.data,
            stored.priority,
            True,
            when,
            stored.reducer,
        )
        job.retries = stored.attempts
        job.key = stored.key
        job.after = stored.after
        self.index.add_stored(job)
        return job

    def take_over(self, job: Job, *, running: bool) -> None:
        """A job from a broker that stopped (its lease ran out): a running one counts an
        attempt; each goes to the tail of its queue or waits for its time."""
        if running:
            self.requeue(job, reason="its broker stopped")
        elif job.when:
            self.defer(job)
        else:
            self.journal.job_requeued(job)
            self._enqueue(job)

    def _attach(self, session: Session, job: Job) -> None:
        if isinstance(job.clients, list):
            job.clients.append(session)
        else:
            job.clients = [session]
        job.ignored = False
        session.attached[job] = None

    def _enqueue(self, job: Job) -> None:
        """To the tail of its queue, or to the store only when the queue's window is full."""
        functions = self.functions
        pager = self.pager
        if pager.spills and pager.should_spill(
            job,
            len(functions.queue(job.function, job.priority)),
            functions.queued_bytes,
            self.settings.max_queued_bytes,
        ):
            pager.spill(job)
            functions.mark_ready(job.function, job.priority)
            self._forget(job)
            return
        functions.append(job)

    def defer(self, job: Job) -> None:
        """Keep an epoch job on the timeline until it is due."""
        job.function.delayed += 1
        self.timeline.add(job.when, job)

    def _due(self, job: Job, now: float) -> None:
        """A delayed job became runnable (unless cancelled meanwhile)."""
        if self.index.jobs.get(job.handle) is job:
            job.function.delayed -= 1
            job.when = 0.0
            if self.timing:
                job.since = now
            if job.stored:
                self.journal.job_requeued(job)  # runnable now, at the tail of its queue
            self._enqueue(job)

    # ------------------------------------------------------------------ schedules

    def _submit_sched(self, session: Session, packet: Packet) -> None:
        name, unique, *fields, data = packet.args
        if len(unique) > MAX_UNIQUE_SIZE:
            self._refuse(session, b"ARGUMENT_TOO_LARGE", b"Unique value too large")
            return
        if session.permits is not None and not session.permits.allows("schedule", name):
            self._deny(session, "schedule", name)
            return
        holder = self.other_brokers.schedule_holder(name, unique)
        if holder is not None:
            text = b"broker %s of the shared store holds this schedule: change it there"
            self._refuse(session, b"SCHEDULE_ELSEWHERE", text % holder.encode())
            return
        handle = self.scheduler.put(
            name, unique, [field.decode("ascii", "replace") for field in fields], data
        )
        self.functions.get(name)
        self._accept(session, handle, self.journal.building)

    def _fire_schedule(self, schedule: Schedule) -> None:
        self.submit(None, schedule.function, schedule.unique, schedule.data, Priority.NORMAL, True)

    # ------------------------------------------------------------------ workers

    def forget_idle_functions(self, after: float) -> int:
        """See ``Functions.forget_idle``; functions with a schedule are kept."""
        return self.functions.forget_idle(after, self.scheduler.functions())

    def _release_held(self, jobs: list[Job]) -> None:
        """Requeue jobs a worker gave up, most recently assigned first (as gearmand)."""
        for job in reversed(jobs):
            self.requeue(job, reason="worker gone")

    def requeue(
        self, job: Job, *, reason: str, limit: int | None = None, delay: float = 0.0
    ) -> None:
        """Put a running job back at the tail of its queue, counting an attempt; with a
        ``delay`` (a background job only), on the timeline until then.

        Once ``limit`` attempts (default ``job_retries``; 0 = unlimited) are used
        up the job ends instead: WORK_FAIL to its clients, and a background job
        goes to the failed list.
        """
        self._detach(job)
        self.results.attempt_failed(job, reason)
        job.numerator = job.denominator = b"0"
        job.retries += 1
        limit = self.settings.job_retries if limit is None else limit
        if limit and job.retries >= limit:
            # One attempt needs no count: a task's own "attempt 4 of 4" stays unambiguous.
            if job.retries > 1:
                first, newline, rest = reason.partition("\n")
                reason = f"{first}; gave up after {job.retries} attempts{newline}{rest}"
            self._give_up(job, reason)
            return
        log.info("requeueing job %s (%s)", job.handle.decode(), reason.partition("\n")[0])
        job.function.retried += 1
        if self.timing:
            job.since = self.clock()
        if not job.clients and not job.background:
            self._abandon(job, queued=False)  # about to be queued again
        if delay:
            job.when = self.clock() + delay
        if job.stored:
            self.journal.job_requeued(job)
        if job.when:
            self.defer(job)
        else:
            self._enqueue(job)

    def _give_up(self, job: Job, error: str) -> None:
        # One line per failure: a worker's traceback is kept whole in the failed list.
        summary = error.partition("\n")[0].replace(
            WORKER_TRACEBACK, "(traceback: spoolgear failed)"
        )
        log.warning(
            "job %s of %s failed: %s", job.handle.decode(), job.function.name.decode(), summary
        )
        if job.background:
            self.failed.add_job(job, error, self.clock())
            self.results.ended(job, FAILED)
            if self.workflows.dependents:
                self._parent_ended(job, FAILED, error)
        job.function.failed += 1
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
            if worker.warnings:
                worker.warnings.pop(job.handle, None)
            job.worker = None
            job.function.running -= 1
            if job.function.gates:
                self.flow.ended(job)
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None

    def _grab(self, session: Session, packet: Packet) -> None:
        session.sleeping = False
        session.noop_sent = False
        job = self.functions.take(session)
        if job is None:
            if self.functions.spilling(session):
                # Jobs wait in the store and a page is on its way: answer then, not NO_JOB.
                self.pager.park(session, packet)
                return
            self.send(session, NO_JOB)
            return
        if self.leased and time.monotonic() > self.lease_deadline:
            # A shared store's lease may have run out (this broker was paused, say): the
            # job goes out only once a write has renewed it, or never (broker/store/pg_leases.py).
            self.output.gate(session, self.journal.building)
            self.renewal_wanted = True
        function = job.function
        job.worker = session
        function.running += 1
        self.results.started(job, session)
        if self.timing:
            function.job_started(job, self.clock())
        session.held[job.handle] = job
        if job.stored:
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

    def _on_job_timeout(self, job: Job, worker: Session, *, first: bool = True) -> None:
        job.timer = None
        if first and job.worker is worker and worker.has_input():
            # The answer may be in there (the broker was paused, say): read it first, once.
            job.timer = self.call_later(
                TIMEOUT_RECHECK, lambda: self._on_job_timeout(job, worker, first=False)
            )
            return
        if job.worker is worker and self.index.jobs.get(job.handle) is job:
            log.warning("job %s exceeded its CAN_DO_TIMEOUT", job.handle.decode())
            self.requeue(job, reason="timeout")

    # ------------------------------------------------------------------ work results

    def _work_end(self, session: Session, packet: Packet) -> None:
        kind = packet.type
        if kind is T.WORK_EXCEPTION:
            text = b"An exception was received for a job that does not exist"
        else:
            text = b"Job given in work result not found"
        job = owned_job(session, packet.args[0], text, self.send)
        if job is None:
            return
        if kind is not T.WORK_COMPLETE and job.background:
            # Run again while attempts are left, then keep it in the failed list.
            error = (
                packet.args[1].decode("utf-8", "replace")
                if kind is T.WORK_EXCEPTION
                else "WORK_FAIL"
            )
            detail = session.warnings.get(job.handle)
            if detail:  # the worker's last warning (a traceback) follows the first line
                error = f"{error or 'WORK_EXCEPTION'}\n{detail.decode('utf-8', 'replace')}"
            self.requeue(
                job,
                reason=error or "WORK_EXCEPTION",
                limit=self._failure_attempts(job.function.name),
            )
            return
        data = encode_packet(kind, *packet.args)
        if kind is T.WORK_COMPLETE:
            job.function.completed += 1
            if job.background:
                self.results.ended(job, SUCCESSFUL, packet.args[1])
                if self.workflows.dependents:
                    self._parent_ended(job, SUCCESSFUL, "")
        else:
            job.function.failed += 1
        if self.timing:
            job.function.job_ended(job, self.clock())
        if kind is T.WORK_EXCEPTION:
            fail = encode_packet(T.WORK_FAIL, job.handle)
            self._finish(job, [(c, data if c.exceptions else fail) for c in job.clients])
        else:
            self._finish(job, [(client, data) for client in job.clients])

    def _work_retry(self, session: Session, packet: Packet) -> None:
        """spoolgear's WORK_RETRY: this attempt failed with ``reason``; the same job, under
        the same handle, runs again ``delay`` seconds from now. The worker keeps the retry
        budget; the broker counts the attempt and keeps the reason with the job's result.
        A foreground job fails at once instead, as on WORK_EXCEPTION: its client waits."""
        handle, delay_text, reason = packet.args
        job = session.held.get(handle)
        if job is None or not job.background:
            self._work_end(session, packet._replace(type=T.WORK_EXCEPTION, args=(handle, reason)))
            return
        delay = seconds(delay_text)
        if delay is None:
            text = b"WORK_RETRY's delay is not a number of seconds: the job runs again now"
            self.send(session, error_packet(b"INVALID_ARGUMENTS", text))
        error = reason.decode("utf-8", "replace") or "WORK_RETRY"
        self.requeue(job, reason=error, limit=0, delay=delay or 0.0)

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
        if stored and job.stored:
            self.journal.job_ended(job)
        self._forget(job)

    def _forget(self, job: Job) -> None:
        self.index.remove(job)
        if job.when:
            job.data = b""  # still on the timeline until its time: keep no payload there
        for client in job.clients:
            client.attached.pop(job, None)
        job.clients = ()

    def cancel(self, handle: bytes) -> bool:
        """Admin ``cancel job``: remove a schedule, or a queued, delayed, spilled or
        running job, failing its clients; it is never retried, and a worker running it
        that asked for cancel notices is told to stop (its result is discarded)."""
        if self.scheduler.cancel(handle):
            return True
        job = self.index.jobs.get(handle)
        if job is None:
            return self.pager.cancel(handle)
        job.function.cancelled += 1
        worker = job.worker
        if worker is not None and worker.cancel_notices:
            self.send(worker, encode_response(T.WORK_CANCEL, handle))
        held = self.other_brokers.cancel(job)  # waiting for its batch's commit: in no queue
        if job.waiting:
            job.function.delayed -= 1
            self.workflows.unlink(job)
        elif not held and job.worker is None:
            if job.when:
                job.function.delayed -= 1
            else:
                job.function.queues[job.priority].remove(job)
                self.functions.hold(job.function, job.priority, -len(job.data))
        self.results.ended(job, CANCELLED)
        if self.workflows.dependents and job.background:
            self._parent_ended(job, CANCELLED, "cancelled")
        self._finish(
            job, [(client, encode_packet(T.WORK_FAIL, job.handle)) for client in job.clients]
        )
        return True

    # ------------------------------------------------------------------ the failed list

    def retry_failed(self, handle: bytes | None) -> int:
        """Queue failed jobs again as new background jobs (all when ``handle`` is None)."""
        handles = self.failed.select(handle)
        for failed_handle in handles:
            record = self.failed.pop(failed_handle)
            self.submit(None, record.function, record.unique, record.data, record.priority, True)
        return len(handles)

    # ------------------------------------------------------------------ pages

    def _page_arrived(self, request: PageRequest, page: Page) -> None:
        """Queue a page of jobs read from the store, skipping any cancelled meanwhile."""
        functions = self.functions
        function, priority = functions.by_name[request.function], request.priority
        queue = functions.queue(function, priority)
        added = 0
        for row in page.rows:
            if self.pager.is_vanished(row.number) or self.handles.of(row.number) in self.index.jobs:
                continue
            queue.append(self.adopt(function, row, 0.0))
            functions.hold(function, priority, len(row.data))
            added += 1
        self.pager.paged(function, request, page, added)
        if added:
            functions.mark_ready(function, priority)
            functions.wake(function)
        self.pager.refill(function, priority)

    def has_jobs(self) -> bool:
        return bool(self.index.jobs) or any(f.has_spilled for f in self.functions.by_name.values())
