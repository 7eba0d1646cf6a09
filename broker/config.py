"""One validated configuration object for the broker, built by the CLI (and later Django).

Every limit has a name, a default and a command-line option; see README "Limits".
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from broker.errors import ConfigurationError
from broker.protocol.reader import DEFAULT_MAX_LINE_LENGTH, DEFAULT_MAX_PACKET_SIZE
from broker.protocol.spool_request import DEFAULT_SPOOL_FUNCTION
from broker.store.base import PAGE_BYTES, check_store_url, default_store_url

DEFAULT_PORT = 4730
# A connection whose unread replies pass this many bytes stops being read until
# it catches up (asyncio's write-buffer high-water mark).
DEFAULT_MAX_OUTPUT_BUFFER = 4 * 1024 * 1024
# Unread reply bytes after which a connection is cut off: replies keep coming for a
# client that does not read (results of its foreground jobs), and memory must not follow.
DEFAULT_MAX_UNREAD_OUTPUT = 64 * 1024 * 1024
# Seconds a connection may take to complete a packet or admin line it has started.
DEFAULT_PACKET_TIMEOUT = 60.0
# Seconds without jobs or workers after which a function name is forgotten (0: never).
DEFAULT_FORGET_IDLE_AFTER = 3600.0
# Bytes of started, incomplete packets held across all connections.
DEFAULT_MAX_PENDING_BYTES = 1 << 30
# Payload bytes queued jobs may hold in memory in all (beyond it: the store, or QUEUE_ERROR).
DEFAULT_MAX_QUEUED_BYTES = 1 << 30
LOG_LEVELS = ("FATAL", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG")


# Minimum time between two store commits: a little waiting lets one fsync cover more jobs.
DEFAULT_COMMIT_DELAY = 0.001
# Queued background jobs kept in memory per function and priority; with a store that
# pages (SQLite) the rest wait in the store and are read in as the queue drains.
DEFAULT_QUEUE_WINDOW = 50_000
# Failed background jobs kept for inspection and replay; the oldest go first.
DEFAULT_MAX_FAILED_JOBS = 100_000
# Functions whose background jobs stay in memory only: the mule and farm messages of
# django_jobs (uWSGI's mule_msg / farm_msg), fast and lost on a broker restart.
DEFAULT_TRANSIENT = ("spoolgear.mule*", "spoolgear.farm.*")
# Queued jobs a transient function holds before submissions are refused (QUEUE_ERROR):
# a producer learns its consumers are behind instead of memory growing without bound.
DEFAULT_TRANSIENT_MAX_QUEUE = 10_000
# Seconds a transient function may go without any worker before submissions to it are
# refused (NO_WORKERS), as uWSGI refuses a message for a mule or farm that does not
# exist; counted from the broker's start, so members have time to connect.
DEFAULT_TRANSIENT_GRACE = 10.0
# Largest vars block a uwsgi spool packet may declare: the full 16-bit size field
# (uWSGI itself stops at --buffer-size, 4096 by default).
DEFAULT_UWSGI_MAX_SIZE = 0xFFFF
# Seconds a uwsgi connection may take to deliver its packet (uWSGI's --socket-timeout).
DEFAULT_UWSGI_TIMEOUT = 4.0
# Seconds between two looks at an ingested spool directory.
DEFAULT_INGEST_INTERVAL = 0.1
# Spool files taken from a directory per look (each holds a file descriptor until stored).
DEFAULT_INGEST_BATCH = 500


def uwsgi_address(address: str) -> tuple[str, int] | str:
    """``HOST:PORT`` to a TCP address, anything with a ``/`` to a unix socket path."""
    if "/" in address:
        return address
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigurationError(f"uwsgi address {address!r}: expected HOST:PORT or a unix "
                                 "socket path (with a '/')")
    return host or "127.0.0.1", int(port)


def _same_dir(one: str, other: str) -> bool:
    return os.path.realpath(one) == os.path.realpath(other)


def parse_retry_failures(specs: tuple[str, ...]) -> dict[bytes, int]:
    """``("mail=5", "*=3")`` to ``{b"mail": 5, b"*": 3}``."""
    attempts = {}
    for spec in specs:
        name, sep, count = spec.rpartition("=")
        if not sep or not count.isdigit() or int(count) < 1:
            raise ConfigurationError(
                f"--retry-failures {spec!r}: expected FUNCTION=ATTEMPTS, e.g. mail=5 or '*=3'")
        attempts[name.encode()] = int(count)
    return attempts


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    store: str = field(default_factory=default_store_url)
    job_retries: int = 0
    retry_failures: tuple[str, ...] = ()
    """``FUNCTION=ATTEMPTS`` (``*`` for every function): failed background jobs run again."""
    max_failed_jobs: int = DEFAULT_MAX_FAILED_JOBS
    transient: tuple[str, ...] = DEFAULT_TRANSIENT
    """Function name patterns (fnmatch) whose background jobs are never stored."""
    transient_max_queue: int = DEFAULT_TRANSIENT_MAX_QUEUE
    transient_grace: float = DEFAULT_TRANSIENT_GRACE
    commit_delay: float = DEFAULT_COMMIT_DELAY
    queue_window: int = DEFAULT_QUEUE_WINDOW
    page_bytes: int = PAGE_BYTES
    """Payload bytes one page of a queue window reads from the store at most."""
    """Jobs per (function, priority) held in memory with a paging store; 0 = no limit."""
    worker_wakeup: int = 0
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    max_admin_line: int = DEFAULT_MAX_LINE_LENGTH
    max_output_buffer: int = DEFAULT_MAX_OUTPUT_BUFFER
    max_unread_output: int = DEFAULT_MAX_UNREAD_OUTPUT
    packet_timeout: float = DEFAULT_PACKET_TIMEOUT
    max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES
    max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES
    forget_idle_after: float = DEFAULT_FORGET_IDLE_AFTER
    handle_prefix: str = ""
    verbose: str = "ERROR"
    uwsgi_sockets: tuple[str, ...] = ()
    """``HOST:PORT`` or a unix socket path per listener for uwsgi spool packets."""
    uwsgi_max_size: int = DEFAULT_UWSGI_MAX_SIZE
    uwsgi_timeout: float = DEFAULT_UWSGI_TIMEOUT
    spool_function: str = DEFAULT_SPOOL_FUNCTION
    """The function of spool requests that name none (plain dicts)."""
    spool_ingest: tuple[str, ...] = ()
    """Spool directories whose files become jobs."""
    ingest_interval: float = DEFAULT_INGEST_INTERVAL
    ingest_batch: int = DEFAULT_INGEST_BATCH

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigurationError(f"--port must be 0-65535, got {self.port}")
        if self.job_retries < 0:
            raise ConfigurationError("--job-retries must be 0 (unlimited) or a positive count")
        if self.worker_wakeup < 0:
            raise ConfigurationError("--worker-wakeup must be 0 (wake all) or a positive count")
        if self.max_unread_output < self.max_output_buffer:
            raise ConfigurationError("--max-unread-output must be at least --max-output-buffer")
        for name in ("max_queued_bytes", "max_pending_bytes"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"--{name.replace('_', '-')} must be positive")
        if self.forget_idle_after < 0:
            raise ConfigurationError("--forget-idle-after must be 0 (never) or more seconds")
        if self.packet_timeout <= 0:
            raise ConfigurationError("--packet-timeout must be positive")
        for name in ("max_packet_size", "max_admin_line", "max_output_buffer"):
            if getattr(self, name) < 64:
                option = "--" + name.replace("_", "-")
                raise ConfigurationError(f"{option} must be at least 64 bytes")
        check_store_url(self.store)
        parse_retry_failures(self.retry_failures)
        if not 0 <= self.commit_delay <= 1:
            raise ConfigurationError("--commit-delay must be between 0 and 1 second")
        if self.queue_window < 0:
            raise ConfigurationError("--queue-window must be 0 (no limit) or a positive count")
        if self.page_bytes < 1:
            raise ConfigurationError("--page-bytes must be positive")
        if self.max_failed_jobs < 1:
            raise ConfigurationError("--max-failed-jobs must be at least 1")
        if self.transient_max_queue < 0:
            raise ConfigurationError("--transient-max-queue must be 0 (no limit) or a positive "
                                     "count")
        if self.transient_grace < 0:
            raise ConfigurationError("--transient-grace must be 0 or more seconds")
        self._validate_uwsgi()
        if self.verbose.upper() not in LOG_LEVELS:
            raise ConfigurationError(f"--verbose must be one of {', '.join(LOG_LEVELS)}")

    def _validate_uwsgi(self) -> None:
        for address in self.uwsgi_sockets:
            uwsgi_address(address)
        if not 1 <= self.uwsgi_max_size <= DEFAULT_UWSGI_MAX_SIZE:
            raise ConfigurationError(f"--uwsgi-max-size must be 1-{DEFAULT_UWSGI_MAX_SIZE}")
        if self.uwsgi_timeout <= 0:
            raise ConfigurationError("--uwsgi-timeout must be positive")
        if not self.spool_function or "@" in self.spool_function:
            raise ConfigurationError("--spool-function must be a non-empty name without '@'")
        if self.spool_ingest and not self.store.startswith(("sqlite:", "spool:")):
            raise ConfigurationError("--spool-ingest needs a durable --store: files are "
                                     "deleted once their job is stored")
        for directory in self.spool_ingest:
            if not os.path.isdir(directory):
                raise ConfigurationError(f"--spool-ingest {directory}: not a directory")
            if self.store.startswith("spool:") and _same_dir(self.store[6:], directory):
                raise ConfigurationError(f"--spool-ingest {directory} is the store's own "
                                         "directory")
        if self.ingest_interval <= 0 or self.ingest_batch < 1:
            raise ConfigurationError("--ingest-interval and --ingest-batch must be positive")

    @property
    def retry_failure_attempts(self) -> dict[bytes, int]:
        return parse_retry_failures(self.retry_failures)

    @property
    def job_handle_prefix(self) -> bytes:
        """gearmand's default is ``H:`` plus the host name."""
        return (self.handle_prefix or "H:" + socket.gethostname()).encode()
