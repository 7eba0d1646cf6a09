"""The part of the configuration the core reads (derived from ``broker/config.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class BrokerSettings:
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
    job_timing: bool = False
    """Measure each job's wait and run time per function (for the metrics endpoint):
    a clock read at each step of a job's life, so only when metrics are served."""
    transient_grace: float = 10.0
    """Seconds a transient function may be without workers before it refuses jobs: a
    message nobody can take is refused, never parked (it would be lost anyway)."""
