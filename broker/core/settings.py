"""The part of the configuration the core reads (built by ``broker/config.py``), and the
defaults of the options that are the core's own, declared here once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from broker.store.operations import FlowRule

# Payload bytes queued jobs may hold in memory in all (beyond it: the store, or QUEUE_ERROR).
DEFAULT_MAX_QUEUED_BYTES = 1 << 30
# Failed background jobs kept for inspection and replay; the oldest go first.
DEFAULT_MAX_FAILED_JOBS = 100_000
# Seconds a transient function may go without any worker before submissions to it are
# refused (NO_WORKERS), as uWSGI refuses a message for a mule or farm that does not
# exist; counted from the broker's start, so members have time to connect.
DEFAULT_TRANSIENT_GRACE = 10.0
# Seconds the result of an ended background job is kept (0: none): an hour, as arq keeps
# results; RQ's 500 s is gone before a person looks, and Celery's day would make a busy
# store mostly results (86 million rows a day at 1,000 jobs a second).
DEFAULT_KEEP_RESULTS = 3600.0
# Bytes of a job's WORK_COMPLETE data kept with its result; a larger value is not kept
# (the result says how large it was).
DEFAULT_MAX_RESULT_BYTES = 64 << 10
# Results kept at once, and the bytes of values and payloads they hold in all (in memory,
# and in a durable store); past either the oldest are forgotten first.
DEFAULT_MAX_KEPT_RESULTS = 100_000
DEFAULT_MAX_KEPT_RESULT_BYTES = 256 << 20
DEFAULT_KEY_SCAN_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    handle_prefix: bytes
    job_retries: int = 0
    worker_wakeup: int = 0
    retry_failures: Mapping[bytes, int] = field(default_factory=dict)
    """Attempts for background jobs that end in WORK_FAIL/EXCEPTION, per function
    (``b"*"`` for all, default 1); such jobs run again until then, and then go to the
    failed list: a failing background job is never silently dropped."""
    max_failed_jobs: int = DEFAULT_MAX_FAILED_JOBS
    transient: tuple[bytes, ...] = ()
    """fnmatch patterns of functions whose background jobs are never stored."""
    transient_max_queue: int = 0
    """The initial ``maxqueue`` of a transient function, per priority (0 = no limit)."""
    max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES
    """Payload bytes queued jobs may hold in memory in all: past it, stored jobs stay in
    the store only (paging) and others are refused with QUEUE_ERROR."""
    job_timing: bool = False
    """Measure each job's wait and run time per function (for the metrics endpoint):
    a clock read at each step of a job's life, so only when metrics are served."""
    transient_grace: float = DEFAULT_TRANSIENT_GRACE
    """Seconds a transient function may be without workers before it refuses jobs: a
    message nobody can take is refused, never parked (it would be lost anyway)."""
    keep_results: float = DEFAULT_KEEP_RESULTS
    """Seconds an ended background job's result is kept (0: no results are kept)."""
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    max_kept_results: int = DEFAULT_MAX_KEPT_RESULTS
    max_kept_result_bytes: int = DEFAULT_MAX_KEPT_RESULT_BYTES
    key_scan_limit: int = DEFAULT_KEY_SCAN_LIMIT
    """Queued jobs of a function a grab looks through for one whose concurrency key a
    per-key limit lets start; past them the function waits for a key to free up."""
    flow_rules: tuple[FlowRule, ...] = ()
    """Limits from the command line (``--limit``, ``--max-running``); a limit they leave
    at 0 keeps what the store had (``flow.py``)."""
