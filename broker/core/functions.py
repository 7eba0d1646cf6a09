"""Function names with their queues and workers, and which job a worker gets next.

Each function keeps one queue per rank (priority) in use. A grab looks at the
highest rank first across all the worker's functions, round-robin within a rank.
A queue whose tail waits in the store (``paging.py``) asks for a page as it runs
low; ``ready`` indexes the functions that may have work per rank, so a worker
with thousands of functions costs a grab no more than one with a few. A function that
a flow rule holds back (``flow.py``) is passed over.
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from fnmatch import fnmatchcase

from broker.core.flow import FlowControl
from broker.core.journal import Journal
from broker.core.model import CallLater, Function, Job, Session
from broker.core.paging import Paging
from broker.core.settings import BrokerSettings
from broker.protocol.packets import PacketType, encode_packet

NOOP = encode_packet(PacketType.NOOP)

# Functions x priority levels a grab looks at one by one; past that it uses the index of
# functions with work, so its cost stays flat however many a worker has.
DIRECT_SCAN_LIMIT = 64


class Functions:
    def __init__(
        self,
        settings: BrokerSettings,
        *,
        clock: Callable[[], float],
        send: Callable[[Session, bytes], None],
        forget: Callable[[Job], None],
        journal: Journal,
        call_later: CallLater,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.send = send
        self.forget = forget
        """Removes every trace of a job nobody wants any more (the broker's index)."""
        self._started_at = clock()
        self.by_name: dict[bytes, Function] = {}
        self.paging = Paging()
        """Set by the broker once it has built its pager (the pager needs ``by_name``)."""
        self.ranks: list[int] = [0, 1, 2]
        """Every queue rank in use by any function, in the order a grab looks at them."""
        self.ready: dict[int, dict[Function, None]] = {}
        """Per rank, the functions that may have work there (queued or spilled jobs);
        entries that turn out empty are dropped when a grab looks at them."""
        self.queued_bytes = 0
        """Payload bytes of every job in a memory queue (``max_queued_bytes``)."""
        self.flow = FlowControl(
            self.by_name, journal=journal, clock=clock, call_later=call_later, wake=self.wake
        )

    def get(self, name: bytes) -> Function:
        """The function of this name, created on first use."""
        function = self.by_name.get(name)
        if function is None:
            function = self.by_name[name] = Function(name)
            if any(fnmatchcase(name, pattern) for pattern in self.settings.transient):
                function.transient = True
                function.max_queue = [self.settings.transient_max_queue] * 3
            if self.flow.gates:
                self.flow.attach(function)
        return function

    def forget_idle(self, after: float, scheduled: set[bytes]) -> int:
        """Forget function names that have had no jobs and no workers for ``after``
        seconds (seen so at two sweeps that far apart), so names clients made up do not
        cost memory forever; one used again is simply created again. Returns how many."""
        now = self.clock()
        forgotten = 0
        for name, function in list(self.by_name.items()):
            if function.workers or function.total or function.kept or name in scheduled:
                function.idle_since = None
            elif function.idle_since is None:
                function.idle_since = now
            elif now - function.idle_since >= after:
                self.remove(function)
                forgotten += 1
        return forgotten

    def remove(self, function: Function) -> None:
        """Forget a function without jobs or workers."""
        del self.by_name[function.name]
        if function.gates:
            self.flow.forget(function)
        for ready in self.ready.values():
            ready.pop(function, None)

    # ------------------------------------------------------------------ queues

    def queue(self, function: Function, rank: int) -> deque[Job]:
        queue = function.queues.get(rank)
        if queue is None:
            queue = function.queues[rank] = deque()
            if rank not in self.ranks:
                bisect.insort(self.ranks, rank)
        return queue

    def hold(self, function: Function, rank: int, size: int) -> None:
        """A job of ``size`` payload bytes joined (or, negative, left) a memory queue."""
        function.held_bytes[rank] = function.held_bytes.get(rank, 0) + size
        self.queued_bytes += size

    def mark_ready(self, function: Function, rank: int) -> None:
        ready = self.ready.get(rank)
        if ready is None:
            ready = self.ready[rank] = {}
        ready[function] = None

    def append(self, job: Job) -> None:
        """Queue a job at the tail of its queue, waking a sleeping worker."""
        function = job.function
        rank = job.priority
        queue = self.queue(function, rank)
        queue.append(job)
        self.hold(function, rank, len(job.data))
        if len(queue) == 1:  # a non-empty queue's function is marked already
            self.mark_ready(function, rank)
        self.wake(function)

    def wake(self, function: Function) -> None:
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

    # ------------------------------------------------------------------ workers

    def add_worker(self, session: Session, function: Function) -> None:
        if function not in session.positions:
            session.positions[function] = len(session.abilities)
            session.abilities.append(function)
            function.workers.append(session)

    def remove_worker(self, session: Session, function: Function) -> None:
        session.abilities.remove(function)
        session.positions = {ability: index for index, ability in enumerate(session.abilities)}
        self._left(function, session)

    def remove_all(self, session: Session) -> None:
        for function in session.abilities:
            self._left(function, session)
        session.abilities.clear()
        session.positions.clear()

    def _left(self, function: Function, session: Session) -> None:
        function.workers.remove(session)
        function.workers_left_at = self.clock()

    def unserved(self, function: Function) -> bool:
        """No worker now, and none within the grace period (or since the broker started)."""
        if function.workers:
            return False
        last_seen = max(function.workers_left_at, self._started_at)
        return self.clock() - last_seen > self.settings.transient_grace

    # ------------------------------------------------------------------ taking work

    def has_work(self, session: Session) -> bool:
        """Whether a job waits in memory for one of the worker's functions (asking for
        pages on the way)."""
        for rank, candidates in self._candidates(session):
            for _, function in candidates:
                if not self._may_start(function):
                    continue  # held back: it wakes the worker when it lets one through
                if function.spilled.get(rank):
                    self.paging.refill(function, rank)
                queue = function.queues.get(rank)
                if queue and (not function.gates or self._first_allowed(function, queue) >= 0):
                    return True
        return False

    def spilling(self, session: Session) -> bool:
        """Whether jobs of the worker's functions wait in the store (a page may come)."""
        return any(
            function.spilled.get(rank) and self._may_start(function)
            for rank, candidates in self._candidates(session)
            for _, function in candidates
        )

    def _may_start(self, function: Function) -> bool:
        """No flow rule holds ``function`` back now."""
        return not function.gates or self.flow.may_start(function)

    def take(self, session: Session) -> Job | None:
        """Highest priority first across all the worker's functions, round-robin within one.

        A worker with few functions, at few priority levels, has them looked at directly
        (the common case, and the fastest); beyond ``DIRECT_SCAN_LIMIT`` pairs only the
        functions that may have work are (see ``_candidates``)."""
        abilities = session.abilities
        count = len(abilities)
        if count * len(self.ranks) > DIRECT_SCAN_LIMIT:
            for rank, candidates in self._candidates(session):
                for index, function in candidates:
                    if function.gates and not self.flow.may_start(function):
                        continue
                    job = self._pop(function, rank)
                    if job is not None:
                        session.round_robin = index + 1
                        if function.gates:
                            self.flow.started(job)
                        return job
            return None
        start = session.round_robin
        for rank in self.ranks:
            for offset in range(count):
                index = (start + offset) % count
                function = abilities[index]
                if not function.queues.get(rank) and not function.spilled.get(rank):
                    continue  # the usual case, without a call
                if function.gates and not self.flow.may_start(function):
                    continue  # its jobs wait in order; the worker takes other work
                job = self._pop(function, rank)
                if job is not None:
                    session.round_robin = index + 1
                    if function.gates:
                        self.flow.started(job)
                    return job
        return None

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
        """The next job of one queue that someone still wants (asking for a page when it
        runs low); abandoned foreground jobs are dropped here, in their turn."""
        if function.spilled.get(rank):  # dict.get: no __missing__ call per grab
            self.paging.refill(function, rank)
        queue = function.queues.get(rank)
        while queue:
            if function.gates and queue[0].key and self.flow.keyed(function):
                return self._pop_allowed(function, rank, queue)
            job = queue.popleft()
            self.hold(function, rank, -len(job.data))
            if job.ignored:
                self.forget(job)
                continue
            return job
        return None

    def _pop_allowed(self, function: Function, rank: int, queue: deque[Job]) -> Job | None:
        """The first job whose concurrency key a per-key limit lets start, from among the
        first ``key_scan_limit``; the ones before it keep their places."""
        index = self._first_allowed(function, queue)
        if index < 0:
            self.flow.held_by_keys(function)
            return None
        job = queue[index]
        del queue[index]
        self.hold(function, rank, -len(job.data))
        return job

    def _first_allowed(self, function: Function, queue: deque[Job]) -> int:
        """Where the first job that may start now is in ``queue`` (-1: none among the
        first ``key_scan_limit``). Abandoned jobs are skipped here and dropped at the head."""
        flow = self.flow
        for index, job in enumerate(itertools.islice(queue, self.settings.key_scan_limit)):
            if not job.ignored and flow.key_allows(function, job.key):
                return index
        return -1
