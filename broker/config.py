"""One validated configuration object for the broker, built by the CLI (and later Django).

Every limit has a name, a default and a command-line option; see docs/limits.md.
"""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import dataclass, fields
from typing import Any

from broker.addresses import DEFAULT_PORT, parse_listen_address, uwsgi_address
from broker.core.access import LOOPBACK_NETWORKS, parse_networks
from broker.core.flow import parse_rate
from broker.core.permissions import Permissions
from broker.core.settings import (
    DEFAULT_KEEP_RESULTS,
    DEFAULT_KEY_SCAN_LIMIT,
    DEFAULT_MAX_FAILED_JOBS,
    DEFAULT_MAX_KEPT_RESULT_BYTES,
    DEFAULT_MAX_KEPT_RESULTS,
    DEFAULT_MAX_QUEUED_BYTES,
    DEFAULT_MAX_RESULT_BYTES,
    DEFAULT_TRANSIENT_GRACE,
    BrokerSettings,
)
from broker.errors import ConfigurationError
from broker.options import (
    Check,
    add_options,
    check_options,
    duration,
    flag_of,
    option,
    option_values,
    read_option_file,
)
from broker.protocol.reader import DEFAULT_MAX_LINE_LENGTH, DEFAULT_MAX_PACKET_SIZE
from broker.protocol.spool_request import DEFAULT_SPOOL_FUNCTION
from broker.store import POSTGRESQL_SCHEMES, check_store_url, default_store_url
from broker.store.base import (
    DEFAULT_STORE_LEASE,
    DEFAULT_STORE_RETRY,
    DEFAULT_SYNC,
    PAGE_BYTES,
    SYNC_LEVELS,
)
from broker.store.operations import FlowRule
from broker.tls import TLSFiles

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
UWSGI_GROUP = "uWSGI front door"
TLS_GROUP = "TLS and permissions"
LOG_LEVELS = ("FATAL", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG")


# Minimum time between two store commits. None by default: a commit starts as soon as the
# previous one ends, with whatever arrived meanwhile, which already batches under load
# (bench/RESULTS.md: 1 ms more cost a lone sender two thirds of its rate and bought no
# throughput).
DEFAULT_COMMIT_DELAY = 0.0
DEFAULT_LAZY_COMMIT_DELAY = 0.005
# Queued background jobs kept in memory per function and priority; with a store that
# pages (SQLite, PostgreSQL) the rest wait in the store and are read in as the queue drains.
DEFAULT_QUEUE_WINDOW = 50_000
# Functions whose background jobs stay in memory only: the mule and farm messages of
# django_jobs (uWSGI's mule_msg / farm_msg), fast and lost on a broker restart.
DEFAULT_TRANSIENT = ("spoolgear.mule*", "spoolgear.farm.*")
# Queued jobs a transient function holds before submissions are refused (QUEUE_ERROR):
# a producer learns its consumers are behind instead of memory growing without bound.
DEFAULT_TRANSIENT_MAX_QUEUE = 10_000
# Largest vars block a uwsgi spool packet may declare: the full 16-bit size field
# (uWSGI itself stops at --buffer-size, 4096 by default).
DEFAULT_UWSGI_MAX_SIZE = 0xFFFF
# Seconds a uwsgi connection may take to deliver its packet (uWSGI's --socket-timeout).
DEFAULT_UWSGI_TIMEOUT = 4.0
# Seconds between two looks at an ingested spool directory.
DEFAULT_INGEST_INTERVAL = 0.1
# Spool files taken from a directory per look (each holds a file descriptor until stored).
DEFAULT_INGEST_BATCH = 500
# Function names labelled one by one in the metrics (function names are client input).
DEFAULT_METRICS_MAX_FUNCTIONS = 100


def _only_with(applies: bool, where: str, options: list[tuple[str, object, object]]) -> None:
    """Refuse an option set away from its default where it would do nothing."""
    if applies:
        return
    for flag, value, default in options:
        if value != default:
            raise ConfigurationError(f"{flag} applies only to {where}")


def _same_dir(one: str, other: str) -> bool:
    return os.path.realpath(one) == os.path.realpath(other)


def load_permissions(path: str) -> Permissions:
    """``--permissions FILE``, read and checked."""
    try:
        with open(path, encoding="utf-8") as file:
            return Permissions.from_toml(file.read())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"--permissions {path}: {exc}") from exc


def _take_environment(values: dict[str, Any]) -> None:
    """gearmand's TLS variables fill the file options not given on the command line; a
    variable that disagrees with the flag given is refused rather than ignored."""
    for declared in fields(ServerConfig):
        name = declared.metadata["environment"]
        variable = os.environ.get(name, "") if name else ""
        if not variable:
            continue
        given = values[declared.name]
        if given and given != variable:
            raise ConfigurationError(
                f"{flag_of(declared)} {given} and ${name}={variable} disagree; unset one"
            )
        values[declared.name] = variable


def parse_retry_failures(specs: tuple[str, ...]) -> dict[bytes, int]:
    """``("mail=5", "*=3")`` to ``{b"mail": 5, b"*": 3}``."""
    attempts = {}
    for spec in specs:
        name, sep, count = spec.rpartition("=")
        if not sep or not count.isdigit() or int(count) < 1:
            raise ConfigurationError(
                f"--retry-failures {spec!r}: expected FUNCTION=ATTEMPTS, e.g. mail=5 or '*=3'"
            )
        attempts[name.encode()] = int(count)
    return attempts


def parse_flow_rules(
    rates: tuple[str, ...], running: tuple[str, ...], per_key: tuple[str, ...] = ()
) -> tuple[FlowRule, ...]:
    """``--limit 'mail.*=100/s'``, ``--max-running 'reports=2'`` and
    ``--max-running-per-key 'import=1'``, one rule per pattern."""
    rules: dict[bytes, FlowRule] = {}
    for spec in rates:
        pattern, sep, rate = spec.rpartition("=")
        try:
            if not sep or not pattern:
                raise ValueError("expected PATTERN=RATE")
            count, per = parse_rate(rate)
        except ValueError as exc:
            raise ConfigurationError(f"--limit {spec!r}: {exc}, e.g. 'mail.*=100/s'") from None
        name = pattern.encode()
        rules[name] = rules.get(name, FlowRule(name))._replace(rate=count, per=per)
    for flag, specs in (("--max-running", running), ("--max-running-per-key", per_key)):
        for spec in specs:
            pattern, sep, count_text = spec.rpartition("=")
            if not sep or not pattern or not count_text.isdigit() or int(count_text) < 1:
                raise ConfigurationError(
                    f"{flag} {spec!r}: expected PATTERN=N with N from 1, e.g. 'reports=2'"
                )
            name, count = pattern.encode(), int(count_text)
            rule = rules.get(name, FlowRule(name))
            per_key_flag = flag == "--max-running-per-key"
            rules[name] = (
                rule._replace(per_key=count) if per_key_flag else rule._replace(running=count)
            )
    return tuple(rules.values())


def read_config_file(path: str) -> dict[str, Any]:
    """``spoolgear serve --config FILE``: the serve options from a TOML file."""
    return read_option_file(ServerConfig, path)


def _networks(specs: tuple[str, ...]) -> bool:
    try:
        parse_networks(specs)
    except ValueError:
        return False
    return True


def _at_least(minimum: float) -> Check:
    return lambda value: value >= minimum


_POSITIVE = "must be positive"
_COUNT = "must be 0 or a positive count"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Every ``spoolgear serve`` option: the parser, the configuration file and the docs'
    option reference come from here."""

    listen: str = option("127.0.0.1", "address to bind")
    port: int = option(
        DEFAULT_PORT,
        "Gearman port (0 picks a free one)",
        check=lambda port: 0 <= port <= 65535,
        rule="must be 0-65535",
    )
    allow: tuple[str, ...] = option(
        (),
        "only peers in this network (CIDR or address) may connect, on every door; "
        "repeatable (default: any)",
        metavar="CIDR",
        repeat=True,
        check=_networks,
        rule="must be addresses or CIDR networks",
    )
    admin_allow: tuple[str, ...] = option(
        LOOPBACK_NETWORKS,
        "peers in this network may run control admin commands (cancel, drop, maxqueue, "
        "retry, shutdown, show jobs...); repeatable, replaces the default",
        metavar="CIDR",
        repeat=True,
        check=_networks,
        rule="must be addresses or CIDR networks",
    )
    ssl: bool = option(
        False,
        "the Gearman port speaks TLS only, as gearmand's --ssl; needs --ssl-certificate and "
        "--ssl-key",
        group=TLS_GROUP,
    )
    ssl_ca_file: str = option(
        "",
        "PEM file of the CAs that sign client certificates; given, every TLS client must "
        "present one",
        metavar="FILE",
        group=TLS_GROUP,
        environment="GEARMAND_CA_CERTIFICATE",
    )
    ssl_certificate: str = option(
        "",
        "the broker's certificate chain (PEM)",
        metavar="FILE",
        group=TLS_GROUP,
        environment="GEARMAND_SERVER_PEM",
    )
    ssl_key: str = option(
        "",
        "the broker's private key (PEM; RSA or EC)",
        metavar="FILE",
        group=TLS_GROUP,
        environment="GEARMAND_SERVER_KEY",
    )
    plain_listen: str = option(
        "",
        "with --ssl, also accept plaintext Gearman connections on HOST:PORT (a loopback "
        "port during a migration to TLS)",
        metavar="HOST:PORT",
        group=TLS_GROUP,
    )
    admin_allow_names: tuple[str, ...] = option(
        (),
        "TLS clients whose verified certificate carries NAME (common name or DNS name) may "
        "run control admin commands as well; repeatable; needs --ssl-ca-file",
        flag="--admin-allow-name",
        metavar="NAME",
        group=TLS_GROUP,
        repeat=True,
    )
    permissions: str = option(
        "",
        "TOML file naming the functions each certificate name may submit to, work on and "
        "schedule; needs --ssl-ca-file",
        metavar="FILE",
        group=TLS_GROUP,
    )
    metrics_listen: str = option(
        "",
        "serve Prometheus metrics at /metrics and health checks at /healthz and /readyz on "
        "[HOST:]PORT (HOST defaults to 127.0.0.1; off unless given)",
        metavar="[HOST:]PORT",
    )
    metrics_max_functions: int = option(
        DEFAULT_METRICS_MAX_FUNCTIONS,
        "function names with a label of their own in the metrics; the rest are added up "
        'under function="_other"',
        metavar="N",
        check=_at_least(1),
        rule="must be at least 1",
    )
    store: str = option(
        default_store_url,
        "job store: sqlite:PATH (durable), postgresql://... (durable, shared), "
        "spool:DIRECTORY or memory:",
    )
    sync: str = option(
        DEFAULT_SYNC,
        "with a durable store, what a job's acknowledgement waits for: full (on disk, "
        "fsynced: survives a power cut) or normal (handed to the operating system, or "
        "committed without waiting for PostgreSQL's disk: survives a crash of the broker, "
        "not of the machine; uWSGI's spooler never fsyncs)",
        check=lambda level: level in SYNC_LEVELS,
        rule=f"must be one of {', '.join(SYNC_LEVELS)}",
    )
    store_retry: float = option(
        DEFAULT_STORE_RETRY,
        "with a postgresql store: seconds a write keeps reconnecting to an unreachable "
        "database (with backoff) while the replies waiting for it are held; past that "
        "they get an ERROR and the broker stops",
        metavar="SECONDS",
        check=lambda seconds: seconds > 0,
        rule="must be more than 0 seconds",
    )
    job_retries: int = option(
        0,
        "attempts before a job whose workers keep dying or timing out fails (0 = unlimited)",
        check=_at_least(0),
        rule=_COUNT,
    )
    retry_failures: tuple[str, ...] = option(
        (),
        "run background jobs of FUNCTION ('*' = all) that fail up to N times in all before "
        "they go to the failed list (repeatable)",
        metavar="FUNCTION=N",
        repeat=True,
    )
    limit: tuple[str, ...] = option(
        (),
        "at most N job starts per second, minute or hour of the functions PATTERN names "
        "(fnmatch: 'mail.*'), across every worker; jobs past it wait their turn (repeatable; "
        "kept in the store, changed at run time with `spoolgear limit`)",
        metavar="PATTERN=N/s|N/m|N/h",
        repeat=True,
    )
    max_running: tuple[str, ...] = option(
        (),
        "at most N jobs of the functions PATTERN names running at once, across every worker "
        "(repeatable; kept in the store, changed at run time with `spoolgear limit`)",
        metavar="PATTERN=N",
        repeat=True,
    )
    max_running_per_key: tuple[str, ...] = option(
        (),
        "at most N jobs with one concurrency key (SUBMIT_JOB_KEYED: a customer, say) of the "
        "functions PATTERN names running at once, while jobs with other keys go ahead "
        "(repeatable; kept in the store, changed at run time with `spoolgear limit`)",
        metavar="PATTERN=N",
        repeat=True,
    )
    key_scan_limit: int = option(
        DEFAULT_KEY_SCAN_LIMIT,
        "queued jobs of a function with a per-key limit a worker's grab looks through for "
        "one whose key may run; past them the function waits for a key to free up",
        check=_at_least(1),
        rule="must be at least 1",
    )
    commit_delay: float = option(
        DEFAULT_COMMIT_DELAY,
        "least seconds between two store commits; longer batches more jobs per fsync",
        check=lambda delay: 0 <= delay <= 1,
        rule="must be between 0 and 1 second",
    )
    lazy_commit_delay: float = option(
        DEFAULT_LAZY_COMMIT_DELAY,
        "least seconds between two store commits that no reply waits for (they record "
        "jobs handed out and finished): fewer fsyncs while draining; a crash may re-run "
        "the jobs finished within this window; 0 commits at once; never shorter than "
        "--commit-delay",
        check=lambda delay: 0 <= delay <= 1,
        rule="must be between 0 and 1 second",
    )
    store_lease: float = option(
        DEFAULT_STORE_LEASE,
        "with a postgresql store shared by several brokers: seconds a broker's lease "
        "lasts; the others take over the jobs of a broker that has not renewed it for "
        "this long (it renews with every write and every second or so)",
        metavar="SECONDS",
        check=lambda seconds: seconds >= 1,
        rule="must be at least 1 second",
    )
    queue_window: int = option(
        DEFAULT_QUEUE_WINDOW,
        "queued background jobs per function and "
        "priority held in memory; with sqlite or postgresql: the rest wait in the "
        "store (0 = no limit)",
        check=_at_least(0),
        rule=_COUNT,
    )
    page_bytes: int = option(
        PAGE_BYTES,
        "payload bytes one read of a queue window brings in "
        "from the store, and a queue holds in memory, at most (a larger "
        "job comes alone)",
        metavar="BYTES",
        check=_at_least(1),
        rule=_POSITIVE,
    )
    max_failed_jobs: int = option(
        DEFAULT_MAX_FAILED_JOBS,
        "failed jobs kept; the oldest are forgotten",
        check=_at_least(1),
        rule="must be at least 1",
    )
    keep_results: float = option(
        DEFAULT_KEEP_RESULTS,
        "how long the result of an ended background job (status, times, workers, errors, "
        "WORK_COMPLETE's data) is kept for look-ups by handle: seconds or 30m, 1h, 2d "
        "(0 = keep none)",
        metavar="DURATION",
        parse=duration,
        check=lambda seconds: seconds >= 0,
        rule="must be 0 or more",
    )
    max_result_bytes: int = option(
        DEFAULT_MAX_RESULT_BYTES,
        "bytes of a job's WORK_COMPLETE data kept with its result; a larger value is not "
        "kept (the result says its size)",
        metavar="BYTES",
        check=_at_least(0),
        rule="must be 0 or more",
    )
    max_kept_results: int = option(
        DEFAULT_MAX_KEPT_RESULTS,
        "results kept at once; past it the oldest are forgotten first",
        check=_at_least(1),
        rule="must be at least 1",
    )
    max_kept_result_bytes: int = option(
        DEFAULT_MAX_KEPT_RESULT_BYTES,
        "bytes of values and payloads the kept results hold in all (in memory, and in a "
        "durable store); past it the oldest are forgotten first",
        metavar="BYTES",
        check=_at_least(1),
        rule=_POSITIVE,
    )
    transient: tuple[str, ...] = option(
        DEFAULT_TRANSIENT,
        "background jobs of functions matching PATTERN (fnmatch) stay in "
        "memory only (repeatable; 'none' stores all)",
        metavar="PATTERN",
        repeat=True,
    )
    transient_max_queue: int = option(
        DEFAULT_TRANSIENT_MAX_QUEUE,
        "queued jobs per transient function and priority before submissions get "
        "QUEUE_ERROR (0 = no limit)",
        metavar="N",
        check=_at_least(0),
        rule=_COUNT,
    )
    transient_grace: float = option(
        DEFAULT_TRANSIENT_GRACE,
        "a transient function without workers for this long refuses new jobs with NO_WORKERS",
        metavar="SECONDS",
        check=_at_least(0),
        rule="must be 0 or more seconds",
    )
    worker_wakeup: int = option(
        0,
        "NOOPs sent per queued job, rotating over sleeping workers (0 = wake all)",
        check=_at_least(0),
        rule=_COUNT,
    )
    max_packet_size: int = option(
        DEFAULT_MAX_PACKET_SIZE,
        "largest packet body accepted, in bytes",
        check=_at_least(64),
        rule="must be at least 64 bytes",
    )
    max_admin_line: int = option(
        DEFAULT_MAX_LINE_LENGTH,
        "longest admin command line, in bytes",
        check=_at_least(64),
        rule="must be at least 64 bytes",
    )
    max_output_buffer: int = option(
        DEFAULT_MAX_OUTPUT_BUFFER,
        "unread reply bytes after which a connection is no longer read",
        check=_at_least(64),
        rule="must be at least 64 bytes",
    )
    max_unread_output: int = option(
        DEFAULT_MAX_UNREAD_OUTPUT,
        "unread reply bytes after which a connection is cut off",
        check=_at_least(64),
        rule="must be at least 64 bytes",
    )
    max_queued_bytes: int = option(
        DEFAULT_MAX_QUEUED_BYTES,
        "payload bytes queued jobs may hold in memory in all; past it, jobs of a durable store "
        "wait in the store and others get QUEUE_ERROR",
        metavar="BYTES",
        check=_at_least(1),
        rule=_POSITIVE,
    )
    max_pending_bytes: int = option(
        DEFAULT_MAX_PENDING_BYTES,
        "bytes of started packets held across all connections; the one that goes past it is closed",
        metavar="BYTES",
        check=_at_least(1),
        rule=_POSITIVE,
    )
    forget_idle_after: float = option(
        DEFAULT_FORGET_IDLE_AFTER,
        "forget a function name without jobs or workers for this long (0: never)",
        metavar="SECONDS",
        check=_at_least(0),
        rule="must be 0 (never) or more seconds",
    )
    packet_timeout: float = option(
        DEFAULT_PACKET_TIMEOUT,
        "a connection that started a packet "
        "or admin line and does not complete it in time is closed",
        metavar="SECONDS",
        check=_at_least(0.001),
        rule=_POSITIVE,
    )
    handle_prefix: str = option(
        "", "job handle prefix (default H:<hostname>)", flag="--job-handle-prefix"
    )
    verbose: str = option(
        "WARNING",
        "log level; WARNING shows what an operator must see (refused peers, failed TLS "
        "handshakes, permission refusals); gearmand's default is ERROR",
        parse=str.upper,
        check=lambda level: level.upper() in LOG_LEVELS,
        rule=f"must be one of {', '.join(LOG_LEVELS)}",
    )
    uwsgi_sockets: tuple[str, ...] = option(
        (),
        "accept uwsgi spool packets (modifier1 17) on HOST:PORT or a unix socket path (repeatable)",
        flag="--uwsgi-socket",
        metavar="ADDR",
        group=UWSGI_GROUP,
        repeat=True,
    )
    suwsgi_sockets: tuple[str, ...] = option(
        (),
        "accept spool packets over TLS (nginx's uwsgi_pass suwsgi://) on HOST:PORT or a unix "
        "socket path, with the --ssl-* files (repeatable)",
        flag="--suwsgi-socket",
        metavar="ADDR",
        group=UWSGI_GROUP,
        repeat=True,
    )
    uwsgi_max_size: int = option(
        DEFAULT_UWSGI_MAX_SIZE,
        "largest vars block a spool packet may declare; bigger ones are closed unanswered",
        group=UWSGI_GROUP,
        check=lambda size: 1 <= size <= DEFAULT_UWSGI_MAX_SIZE,
        rule=f"must be 1-{DEFAULT_UWSGI_MAX_SIZE}",
    )
    uwsgi_timeout: float = option(
        DEFAULT_UWSGI_TIMEOUT,
        "seconds a sender has to deliver its packet",
        group=UWSGI_GROUP,
        check=_at_least(0.001),
        rule=_POSITIVE,
    )
    spool_function: str = option(
        DEFAULT_SPOOL_FUNCTION,
        "function of spool requests that name none",
        group=UWSGI_GROUP,
        check=lambda name: bool(name) and "@" not in name,
        rule="must be a non-empty name without '@'",
    )
    spool_ingest: tuple[str, ...] = option(
        (),
        "turn the spool files uWSGI apps write into DIR into jobs (repeatable; needs a "
        "durable store)",
        metavar="DIR",
        group=UWSGI_GROUP,
        repeat=True,
    )
    ingest_interval: float = option(
        DEFAULT_INGEST_INTERVAL,
        "seconds between two looks at each spool directory",
        group=UWSGI_GROUP,
        check=_at_least(0.001),
        rule=_POSITIVE,
    )
    ingest_batch: int = option(
        DEFAULT_INGEST_BATCH,
        "spool files taken per look",
        group=UWSGI_GROUP,
        check=_at_least(1),
        rule=_POSITIVE,
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_options(self)
        if self.max_unread_output < self.max_output_buffer:
            raise ConfigurationError("--max-unread-output must be at least --max-output-buffer")
        check_store_url(self.store)
        parse_retry_failures(self.retry_failures)
        parse_flow_rules(self.limit, self.max_running, self.max_running_per_key)
        for address in self.uwsgi_sockets + self.suwsgi_sockets:
            uwsgi_address(address)
        self._validate_tls()
        if self.metrics_listen:
            self.metrics_address()
        _only_with(
            self.uses_postgresql,
            "a postgresql store",
            [
                ("--store-retry", self.store_retry, DEFAULT_STORE_RETRY),
                ("--store-lease", self.store_lease, DEFAULT_STORE_LEASE),
            ],
        )
        _only_with(
            not self.store.startswith("memory:"),
            "a durable --store, not memory:",
            [
                ("--sync", self.sync, DEFAULT_SYNC),
                ("--commit-delay", self.commit_delay, DEFAULT_COMMIT_DELAY),
                ("--lazy-commit-delay", self.lazy_commit_delay, DEFAULT_LAZY_COMMIT_DELAY),
            ],
        )
        if self.lazy_commit_delay not in (DEFAULT_LAZY_COMMIT_DELAY, 0) and (
            self.lazy_commit_delay < self.commit_delay
        ):
            raise ConfigurationError(
                f"--lazy-commit-delay {self.lazy_commit_delay:g} is shorter than --commit-delay"
                f" {self.commit_delay:g}, which spaces every commit: lengthen it or leave it out"
            )
        if self.spool_ingest and self.store.startswith("memory:"):
            raise ConfigurationError(
                "--spool-ingest needs a durable --store: files are deleted once their job is stored"
            )
        for directory in self.spool_ingest:
            if not os.path.isdir(directory):
                raise ConfigurationError(f"--spool-ingest {directory}: not a directory")
            if self.store.startswith("spool:") and _same_dir(self.store[6:], directory):
                raise ConfigurationError(f"--spool-ingest {directory} is the store's own directory")

    @property
    def uses_postgresql(self) -> bool:
        return self.store.partition(":")[0] in POSTGRESQL_SCHEMES

    def metrics_address(self) -> tuple[str, int]:
        """``--metrics-listen`` as (host, port); a bare port is on loopback."""
        if self.metrics_listen.isdigit():
            return parse_listen_address(f"127.0.0.1:{self.metrics_listen}")
        return parse_listen_address(self.metrics_listen)

    @property
    def tls_listening(self) -> bool:
        return self.ssl or bool(self.suwsgi_sockets)

    @property
    def tls_files(self) -> TLSFiles:
        return TLSFiles(self.ssl_ca_file, self.ssl_certificate, self.ssl_key)

    def _validate_tls(self) -> None:
        """Fail closed, and refuse TLS settings that nothing would use."""
        if not self.tls_listening:
            given = [
                flag
                for flag, value in (
                    ("--ssl-ca-file", self.ssl_ca_file),
                    ("--ssl-certificate", self.ssl_certificate),
                    ("--ssl-key", self.ssl_key),
                    ("--plain-listen", self.plain_listen),
                )
                if value
            ]
            if given:
                raise ConfigurationError(
                    f"{', '.join(given)} given without a TLS listener (--ssl or --suwsgi-socket)"
                )
        if self.plain_listen:
            if not self.ssl:
                raise ConfigurationError("--plain-listen is for running beside --ssl")
            parse_listen_address(self.plain_listen)
        if (self.admin_allow_names or self.permissions) and not self.ssl_ca_file:
            raise ConfigurationError(
                "--admin-allow-name and --permissions match verified certificate names: "
                "they need --ssl-ca-file"
            )
        if self.tls_listening:
            self.tls_files.server_context()
        if self.permissions:
            load_permissions(self.permissions)

    @classmethod
    def add_options(cls, parser: argparse.ArgumentParser) -> None:
        """The ``spoolgear serve`` options, as declared above."""
        groups = {name: parser.add_argument_group(name) for name in (UWSGI_GROUP, TLS_GROUP)}
        add_options(cls, parser, groups)

    @classmethod
    def from_options(cls, options: argparse.Namespace) -> ServerConfig:
        """The configuration from parsed ``add_options`` arguments."""
        values = option_values(cls, options)
        if values.get("ssl") or values.get("suwsgi_sockets"):
            _take_environment(values)
        return cls(**values)

    def broker_settings(self) -> BrokerSettings:
        """What the broker core needs of it."""
        return BrokerSettings(
            handle_prefix=self.job_handle_prefix,
            job_retries=self.job_retries,
            worker_wakeup=self.worker_wakeup,
            retry_failures=self.retry_failure_attempts,
            max_failed_jobs=self.max_failed_jobs,
            keep_results=self.keep_results,
            max_result_bytes=self.max_result_bytes,
            max_kept_results=self.max_kept_results,
            max_kept_result_bytes=self.max_kept_result_bytes,
            transient=tuple(pattern.encode() for pattern in self.transient),
            transient_max_queue=self.transient_max_queue,
            transient_grace=self.transient_grace,
            max_queued_bytes=self.max_queued_bytes,
            job_timing=bool(self.metrics_listen),
            flow_rules=parse_flow_rules(self.limit, self.max_running, self.max_running_per_key),
            key_scan_limit=self.key_scan_limit,
        )

    @property
    def retry_failure_attempts(self) -> dict[bytes, int]:
        return parse_retry_failures(self.retry_failures)

    @property
    def job_handle_prefix(self) -> bytes:
        """gearmand's default is ``H:`` plus the host name."""
        return (self.handle_prefix or "H:" + socket.gethostname()).encode()
