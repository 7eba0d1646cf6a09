"""The records the broker keeps: jobs, functions and connected sessions."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import Protocol

from broker.core.histogram import JOB_SECONDS, Histogram
from broker.core.permissions import Permits
from broker.protocol.priorities import Priority, gearman_priority, priority_index
from broker.store.operations import FlowRule


class Cancellable(Protocol):
    """What an injected timer returns (``asyncio.TimerHandle`` fits)."""

    def cancel(self) -> None: ...


CallLater = Callable[[float, Callable[[], None]], Cancellable]


class Job:
    """One unit of work, from submission until WORK_COMPLETE/FAIL/EXCEPTION or a drop."""

    __slots__ = (
        "after",
        "background",
        "clients",
        "coalesce_key",
        "created",
        "data",
        "denominator",
        "function",
        "handle",
        "history",
        "ignored",
        "key",
        "numerator",
        "priority",
        "reducer",
        "retries",
        "since",
        "stopped",
        "stored",
        "timer",
        "unique",
        "waiting",
        "when",
        "worker",
    )

    def __init__(
        self,
        handle: bytes,
        function: Function,
        unique: bytes,
        data: bytes,
        priority: int,
        background: bool,
        when: float = 0.0,
        reducer: bytes = b"",
    ) -> None:
        self.handle = handle
        self.function = function
        self.unique = unique
        self.data = data
        self.priority = priority
        self.background = background
        self.stored = background and not function.transient
        """Kept in the store (with a durable one): background, and its function is not
        transient (which is fixed when the function is created)."""
        self.when = when
        self.reducer = reducer
        # Most jobs never have a waiting client: share one empty tuple until one attaches.
        self.clients: list[Session] | tuple[()] = ()
        self.worker: Session | None = None
        self.retries = 0
        self.numerator = b"0"
        self.denominator = b"0"
        self.ignored = False
        self.timer: Cancellable | None = None
        self.coalesce_key: tuple[bytes, ...] | None = None
        self.since = 0.0
        """With job timing on: when it became runnable, then when it started (0: unknown,
        as for a job read back from the store)."""
        self.created = 0.0
        """With results kept: when it was submitted (0: unknown, as for a job read back
        from the store)."""
        self.history: Attempts | None = None
        """With results kept: its attempts so far, from its first start."""
        self.key = b""
        """Its concurrency key (SUBMIT_JOB_KEYED), for flow rules' per-key limits."""
        self.after = b""
        """What it runs after (SUBMIT_JOB_AFTER, ``workflows.py``): empty for most jobs."""
        self.waiting = 0
        """How many of those it still waits for (in no queue meanwhile)."""
        self.stopped = ""
        """Why its chain stopped before it ran (one it ran after failed)."""


class Attempts:
    """A background job's attempts, for its result: when they started, on which worker,
    and why each failed one failed."""

    __slots__ = ("errors", "first_started", "last_started", "workers")

    def __init__(self, started: float) -> None:
        self.first_started = started
        self.last_started = started
        self.workers: list[str] = []
        self.errors: tuple[str, ...] = ()
        """Most jobs never fail: they share the one empty tuple."""


class Function:
    """A function name with its queues (one per rank in use) and registered workers."""

    __slots__ = (
        "cancelled",
        "completed",
        "delayed",
        "failed",
        "gates",
        "held_bytes",
        "idle_since",
        "kept",
        "max_queue",
        "name",
        "queues",
        "retried",
        "run_time",
        "running",
        "spilled",
        "submitted",
        "transient",
        "wait_time",
        "wake_position",
        "workers",
        "workers_left_at",
    )

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.queues: dict[int, deque[Job]] = {}
        """Per rank, created when first used (a function name costs little until then)."""
        # Per rank, payload bytes of the jobs in ``queues`` (what memory holds).
        self.held_bytes: dict[int, int] = {}
        self.running = 0
        # Epoch jobs not yet due: counted in `status` like gearmand, not yet in a queue.
        self.delayed = 0
        # Per rank, queued jobs held only in the store (see core/paging.py).
        self.spilled: Counter[int] = Counter()
        self.workers: list[Session] = []
        # Jobs created, and how they ended or went back to the queue, since start-up.
        self.submitted = self.completed = self.failed = self.cancelled = self.retried = 0
        # With job timing on: from runnable to started, and from started to the end.
        self.wait_time = Histogram(JOB_SECONDS)
        self.run_time = Histogram(JOB_SECONDS)
        self.workers_left_at = 0.0
        self.idle_since: float | None = None
        """When a sweep first found it without jobs or workers (see forget_idle_functions)."""
        self.kept = False
        """Created or limited by an operator (``create function``, ``maxqueue``)."""
        """When the last worker left (clock seconds); 0 if none ever did."""
        self.max_queue = [0, 0, 0]
        self.wake_position = 0
        # Background jobs of a transient function are never stored (--transient).
        self.transient = False
        self.gates: tuple[Gate, ...] = ()
        """The flow rules whose pattern names it (``flow.py``); most functions have none."""

    def waiting(self, priority: Priority) -> int:
        """Queued jobs reported under one Gearman priority, in memory or left in the store."""
        return sum(
            len(queue) + self.spilled[rank]
            for rank, queue in self.queues.items()
            if gearman_priority(rank) is priority
        )

    def job_started(self, job: Job, now: float) -> None:
        """With job timing on: ``job`` starts now, after waiting since ``job.since``."""
        if job.since:
            self.wait_time.observe(now - job.since)
        job.since = now

    def job_ended(self, job: Job, now: float) -> None:
        if job.since:
            self.run_time.observe(now - job.since)

    def limit(self, rank: int) -> int:
        return self.max_queue[priority_index(rank)]

    @property
    def has_spilled(self) -> bool:
        return any(self.spilled.values())

    @property
    def queued(self) -> int:
        return sum(map(len, self.queues.values())) + sum(self.spilled.values())

    @property
    def total(self) -> int:
        return self.queued + self.running + self.delayed


def _nothing_unread() -> bool:
    return False


class Gate:
    """One flow rule in force (``flow.py``): the functions it covers, and what it allows
    now (a bucket of job starts, refilled at the rule's rate)."""

    __slots__ = ("blocked", "keys", "members", "refilled", "rule", "timer", "tokens")

    def __init__(self, rule: FlowRule, now: float) -> None:
        self.rule = rule
        self.members: list[Function] = []
        self.tokens = float(rule.rate)
        """Job starts allowed now; a full bucket holds ``rate`` (a burst of one period)."""
        self.refilled = now
        self.blocked = False
        """It held a worker back: wake its functions' workers when it opens."""
        self.timer: Cancellable | None = None
        """Set while a wake-up waits for the next start the rate allows."""
        self.keys: dict[bytes, int] = {}
        """With a per-key limit: running jobs per concurrency key (none at 0)."""

    def running(self) -> int:
        return sum(function.running for function in self.members)


class Session:
    """The broker's view of one connection: client, worker and admin roles at once.

    Output is collected in ``out`` and handed to ``write`` in one piece when the
    broker flushes, so every reply produced by one read (an admin table, a
    JOB_ASSIGN plus NOOPs) leaves in a single write.
    """

    __slots__ = (
        "abilities",
        "attached",
        "cancel_notices",
        "client_id",
        "closed",
        "exceptions",
        "fd",
        "gate",
        "has_input",
        "held",
        "host",
        "label",
        "names",
        "noop_sent",
        "out",
        "permits",
        "positions",
        "round_robin",
        "sleeping",
        "timeouts",
        "warnings",
        "write",
    )

    def __init__(self, write: Callable[[bytes], None], fd: int, host: str) -> None:
        self.write = write
        self.has_input: Callable[[], bool] = _nothing_unread
        """Whether bytes from the peer wait unread (set by the server; timers ask first)."""
        self.fd = fd
        self.host = host
        self.client_id = b"-"
        self.label = host
        """How a job's result names this worker: its client id, else its address (made
        once, not per job)."""
        self.exceptions = False
        self.cancel_notices = False
        """Tell it (WORK_CANCEL) when a job it runs is cancelled."""
        self.out: list[bytes] = []
        self.abilities: list[Function] = []
        self.positions: dict[Function, int] = {}
        """Each ability's index in ``abilities``: membership and round-robin order in O(1)."""
        self.timeouts: dict[bytes, float] = {}
        self.round_robin = 0
        self.sleeping = False
        self.noop_sent = False
        self.held: dict[bytes, Job] = {}
        self.attached: dict[Job, None] = {}
        self.closed = False
        # Journal batch whose commit this session's output waits for (0 = none).
        self.gate = 0
        self.warnings: dict[bytes, bytes] = {}
        """The last WORK_WARNING of each job this worker holds (a failing django_jobs task
        sends its traceback so): it joins the job's failed-list record."""
        self.names: tuple[str, ...] = ()
        """The verified names of the peer's TLS certificate, if it presented one."""
        self.permits: Permits | None = None
        """The functions it may use (``--permissions``); None: all of them."""


class Accepted:
    """A submission was accepted: ``handle`` is its job (a new one, or the one it
    coalesced onto), durable once journal batch ``batch`` is committed (0: nothing to
    wait for)."""

    __slots__ = ("batch", "handle")

    def __init__(self, handle: bytes, batch: int) -> None:
        self.handle = handle
        self.batch = batch


class Refused:
    """A submission was refused with a Gearman error ``code`` and ``text``."""

    __slots__ = ("code", "text")

    def __init__(self, code: bytes, text: bytes) -> None:
        self.code = code
        self.text = text


Submitted = Accepted | Refused
