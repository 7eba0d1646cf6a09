"""The ``spoolgear`` command: run the broker, look at it, submit jobs."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import faulthandler
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from broker import __version__
from broker.admin import AdminClient
from broker.client import Client
from broker.config import (
    DEFAULT_COMMIT_DELAY,
    DEFAULT_FORGET_IDLE_AFTER,
    DEFAULT_INGEST_BATCH,
    DEFAULT_INGEST_INTERVAL,
    DEFAULT_MAX_FAILED_JOBS,
    DEFAULT_MAX_OUTPUT_BUFFER,
    DEFAULT_MAX_PENDING_BYTES,
    DEFAULT_MAX_QUEUED_BYTES,
    DEFAULT_MAX_UNREAD_OUTPUT,
    DEFAULT_PACKET_TIMEOUT,
    DEFAULT_PORT,
    DEFAULT_QUEUE_WINDOW,
    DEFAULT_TRANSIENT,
    DEFAULT_TRANSIENT_GRACE,
    DEFAULT_TRANSIENT_MAX_QUEUE,
    DEFAULT_UWSGI_MAX_SIZE,
    DEFAULT_UWSGI_TIMEOUT,
    LOG_LEVELS,
    ServerConfig,
)
from broker.core.model import Priority
from broker.errors import BrokerError
from broker.protocol.reader import DEFAULT_MAX_LINE_LENGTH, DEFAULT_MAX_PACKET_SIZE
from broker.protocol.spool_request import DEFAULT_QUEUE, DEFAULT_SPOOL_FUNCTION
from broker.spooler import (
    DEFAULT_ATTEMPTS,
    DEFAULT_FOREVER_INTERVAL,
    DEFAULT_MAX_RETRY_DELAY,
    DEFAULT_RETRY_DELAY,
)
from broker.store.base import PAGE_BYTES, default_store_url


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spoolgear", description=__doc__)
    parser.add_argument("--version", action="version", version=f"spoolgear {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the broker in the foreground")
    serve.add_argument("--listen", default="127.0.0.1",
                       help="address to bind (default %(default)s)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT,
                       help="Gearman port (default %(default)s; 0 picks a free one)")
    serve.add_argument("--store", default=default_store_url(),
                       help="job store: sqlite:PATH (durable) or memory: (default %(default)s)")
    serve.add_argument("--job-retries", type=int, default=0,
                       help="attempts before a job whose workers keep dying or timing out "
                            "fails (default 0 = unlimited)")
    serve.add_argument("--retry-failures", action="append", default=[], metavar="FUNCTION=N",
                       help="run background jobs of FUNCTION ('*' = all) that fail up to N "
                            "times in all before they go to the failed list (repeatable)")
    serve.add_argument("--commit-delay", type=float, default=DEFAULT_COMMIT_DELAY,
                       help="least seconds between two store commits; longer batches more "
                            "jobs per fsync (default %(default)s)")
    serve.add_argument("--queue-window", type=int, default=DEFAULT_QUEUE_WINDOW,
                       help="queued background jobs per function and priority held in "
                            "memory; with sqlite: the rest wait in the store (default "
                            "%(default)s, 0 = no limit)")
    serve.add_argument("--page-bytes", type=int, default=PAGE_BYTES, metavar="BYTES",
                       help="payload bytes one read of a queue window brings in from the "
                            "store at most (default %(default)s; a larger job comes alone)")
    serve.add_argument("--max-failed-jobs", type=int, default=DEFAULT_MAX_FAILED_JOBS,
                       help="failed jobs kept; the oldest are forgotten (default %(default)s)")
    serve.add_argument("--transient", action="append", metavar="PATTERN",
                       help="background jobs of functions matching PATTERN (fnmatch) stay in "
                            "memory only (repeatable; default: "
                            f"{' '.join(DEFAULT_TRANSIENT)}; 'none' stores all)")
    serve.add_argument("--transient-max-queue", type=int, default=DEFAULT_TRANSIENT_MAX_QUEUE,
                       metavar="N", help="queued jobs per transient function and priority "
                                         "before submissions get QUEUE_ERROR (0 = no limit)")
    serve.add_argument("--transient-grace", type=float, default=DEFAULT_TRANSIENT_GRACE,
                       metavar="SECONDS", help="a transient function without workers for this "
                       "long refuses new jobs with NO_WORKERS (default %(default)s)")
    serve.add_argument("--worker-wakeup", type=int, default=0,
                       help="NOOPs sent per queued job, rotating over sleeping workers "
                            "(default 0 = wake all)")
    serve.add_argument("--max-packet-size", type=int, default=DEFAULT_MAX_PACKET_SIZE,
                       help="largest packet body accepted, in bytes (default %(default)s)")
    serve.add_argument("--max-admin-line", type=int, default=DEFAULT_MAX_LINE_LENGTH,
                       help="longest admin command line, in bytes (default %(default)s)")
    serve.add_argument("--max-output-buffer", type=int, default=DEFAULT_MAX_OUTPUT_BUFFER,
                       help="unread reply bytes after which a connection is no longer read "
                            "(default %(default)s)")
    serve.add_argument("--max-unread-output", type=int, default=DEFAULT_MAX_UNREAD_OUTPUT,
                       help="unread reply bytes after which a connection is cut off "
                            "(default %(default)s)")
    serve.add_argument("--max-queued-bytes", type=int, default=DEFAULT_MAX_QUEUED_BYTES,
                       metavar="BYTES", help="payload bytes queued jobs may hold in memory in "
                       "all; past it, jobs of a durable store wait in the store and others get "
                       "QUEUE_ERROR (default %(default)s)")
    serve.add_argument("--max-pending-bytes", type=int, default=DEFAULT_MAX_PENDING_BYTES,
                       metavar="BYTES", help="bytes of started packets held across all "
                       "connections; the one that goes past it is closed (default %(default)s)")
    serve.add_argument("--forget-idle-after", type=float, default=DEFAULT_FORGET_IDLE_AFTER,
                       metavar="SECONDS", help="forget a function name without jobs or workers "
                       "for this long (0: never; default %(default)s)")
    serve.add_argument("--packet-timeout", type=float, default=DEFAULT_PACKET_TIMEOUT,
                       metavar="SECONDS", help="a connection that started a packet or admin "
                       "line and does not complete it in time is closed (default %(default)s)")
    serve.add_argument("--job-handle-prefix", default="",
                       help="job handle prefix (default H:<hostname>)")
    serve.add_argument("--verbose", default="ERROR", type=str.upper, choices=LOG_LEVELS,
                       help="log level (default %(default)s)")
    uwsgi = serve.add_argument_group("uWSGI front door")
    uwsgi.add_argument("--uwsgi-socket", action="append", default=[], metavar="ADDR",
                       help="accept uwsgi spool packets (modifier1 17) on HOST:PORT or a unix "
                            "socket path (repeatable)")
    uwsgi.add_argument("--uwsgi-max-size", type=int, default=DEFAULT_UWSGI_MAX_SIZE,
                       help="largest vars block a spool packet may declare; bigger ones are "
                            "closed unanswered (default %(default)s)")
    uwsgi.add_argument("--uwsgi-timeout", type=float, default=DEFAULT_UWSGI_TIMEOUT,
                       help="seconds a sender has to deliver its packet (default %(default)s)")
    uwsgi.add_argument("--spool-function", default=DEFAULT_SPOOL_FUNCTION,
                       help="function of spool requests that name none (default %(default)s)")
    uwsgi.add_argument("--spool-ingest", action="append", default=[], metavar="DIR",
                       help="turn the spool files uWSGI apps write into DIR into jobs "
                            "(repeatable; needs a durable store)")
    uwsgi.add_argument("--ingest-interval", type=float, default=DEFAULT_INGEST_INTERVAL,
                       help="seconds between two looks at each spool directory "
                            "(default %(default)s)")
    uwsgi.add_argument("--ingest-batch", type=int, default=DEFAULT_INGEST_BATCH,
                       help="spool files taken per look (default %(default)s)")

    def with_server(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--server", "-s", default=f"127.0.0.1:{DEFAULT_PORT}",
                         help="broker address (default %(default)s)")
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        return sub

    with_server(commands.add_parser("status", help="queued and running jobs per function"))
    with_server(commands.add_parser("workers", help="connections and their functions"))
    failed = with_server(commands.add_parser("failed", help="show, replay or drop failed jobs"))
    action = failed.add_mutually_exclusive_group()
    action.add_argument("--retry", metavar="HANDLE|all", help="queue failed jobs again")
    action.add_argument("--drop", metavar="HANDLE|all", help="forget failed jobs")
    submit = with_server(commands.add_parser("submit", help="submit a job"))
    submit.add_argument("function")
    submit.add_argument("data", nargs="?", default="",
                        help="payload (default: read stdin if piped)")
    submit.add_argument("--background", "-b", action="store_true", help="do not wait")
    submit.add_argument("--priority", choices=["high", "normal", "low"], default="normal")
    submit.add_argument("--unique", "-u", default="", help="coalescing key")
    submit.add_argument("--at", help="run at this time: epoch seconds or ISO 8601 (background)")
    submit.add_argument("--timeout", type=float, help="seconds to wait for a foreground result")
    spooler = commands.add_parser("spooler", help="run uWSGI-style spool handlers")
    spooler.add_argument("--import", dest="modules", action="append", required=True,
                         metavar="MODULE", help="module (or .py file) with spool handlers "
                                                "(repeatable)")
    spooler.add_argument("--server", "-s", action="append", metavar="HOST:PORT",
                         help=f"broker address (repeatable; default 127.0.0.1:{DEFAULT_PORT})")
    spooler.add_argument("--queue", "-q", action="append", metavar="SPOOLER",
                         help="serve jobs sent to this named spooler (its name or directory; "
                              "repeatable; 'default', the unnamed one, when not given)")
    spooler.add_argument("--processes", "--spooler-processes", type=int, default=1,
                         metavar="N", help="N spooler processes under one master "
                                           "(default %(default)s)")
    spooler.add_argument("--max-tasks", "--spooler-max-tasks", type=int, metavar="N",
                         help="replace a spooler process after N jobs")
    spooler.add_argument("--harakiri", "--spooler-harakiri", type=float, metavar="SECONDS",
                         help="cut off a job running longer (a failed attempt) and replace "
                              "its process")
    spooler.add_argument("--chdir", "--spooler-chdir", metavar="DIR",
                         help="run each job in this directory")
    spooler.add_argument("--attempts", type=int, default=DEFAULT_ATTEMPTS,
                         help="runs of a job that keeps failing before it goes to the failed "
                              "list (default %(default)s)")
    spooler.add_argument("--retry-delay", type=float, default=DEFAULT_RETRY_DELAY,
                         help="seconds before the first retry, doubled for each next one "
                              "(default %(default)s)")
    spooler.add_argument("--max-retry-delay", type=float, default=DEFAULT_MAX_RETRY_DELAY,
                         help="longest wait between two attempts (default %(default)s)")
    spooler.add_argument("--forever-interval", type=float, default=DEFAULT_FOREVER_INTERVAL,
                         help="seconds between two runs of a @spoolforever job "
                              "(default %(default)s)")
    spooler.add_argument("--spool-function", default=DEFAULT_SPOOL_FUNCTION,
                         help="function under which plain dicts reach spooler(env) handlers "
                              "(the broker's --spool-function; default %(default)s)")
    spooler.add_argument("--allow-pickle", action="store_true",
                         help="unpickle arguments of jobs from the real uwsgidecorators or "
                              "uwsgi_tasks: UNSAFE unless every producer is trusted")
    spooler.add_argument("--burst", action="store_true", help="exit once no job is left")
    spooler.add_argument("--verbose", default="INFO", type=str.upper, choices=LOG_LEVELS,
                         help="log level (default %(default)s)")
    return parser


def _spooler(args: argparse.Namespace) -> int:
    from broker import spooler

    _configure_logging(args.verbose)
    settings = spooler.SpoolerSettings(
        servers=args.server or [f"127.0.0.1:{DEFAULT_PORT}"],
        queues=args.queue or [DEFAULT_QUEUE],
        attempts=args.attempts, retry_delay=args.retry_delay,
        max_retry_delay=args.max_retry_delay, forever_interval=args.forever_interval,
        allow_pickle=args.allow_pickle, spool_function=args.spool_function,
        processes=args.processes, max_tasks=args.max_tasks, harakiri=args.harakiri,
        chdir=args.chdir)
    spooler.run(args.modules, settings, burst=args.burst)
    return 0


def _configure_logging(verbose: str) -> None:
    level = {"FATAL": "CRITICAL", "ALERT": "CRITICAL", "NOTICE": "INFO"}.get(verbose, verbose)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _transient_patterns(given: list[str] | None) -> tuple[str, ...]:
    if given is None:
        return DEFAULT_TRANSIENT
    return tuple(pattern for pattern in given if pattern != "none")


def _serve(args: argparse.Namespace) -> int:
    # A fatal signal (SIGBUS from a store file made immutable under SQLite's mapping, say)
    # still leaves a line saying what happened and where.
    faulthandler.enable()
    config = ServerConfig(listen=args.listen, port=args.port, store=args.store,
                          job_retries=args.job_retries, worker_wakeup=args.worker_wakeup,
                          retry_failures=tuple(args.retry_failures),
                          max_failed_jobs=args.max_failed_jobs,
                          transient=_transient_patterns(args.transient),
                          transient_max_queue=args.transient_max_queue,
                          transient_grace=args.transient_grace,
                          commit_delay=args.commit_delay, queue_window=args.queue_window,
                          page_bytes=args.page_bytes,
                          max_packet_size=args.max_packet_size,
                          max_admin_line=args.max_admin_line,
                          max_output_buffer=args.max_output_buffer,
                          max_unread_output=args.max_unread_output,
                          packet_timeout=args.packet_timeout,
                          max_queued_bytes=args.max_queued_bytes,
                          max_pending_bytes=args.max_pending_bytes,
                          forget_idle_after=args.forget_idle_after,
                          handle_prefix=args.job_handle_prefix, verbose=args.verbose,
                          uwsgi_sockets=tuple(args.uwsgi_socket),
                          uwsgi_max_size=args.uwsgi_max_size, uwsgi_timeout=args.uwsgi_timeout,
                          spool_function=args.spool_function,
                          spool_ingest=tuple(args.spool_ingest),
                          ingest_interval=args.ingest_interval, ingest_batch=args.ingest_batch)
    _configure_logging(args.verbose)
    from broker.server.server import serve

    loop_factory = _uvloop_factory()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(config))
    return 0


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _print_table(headers: Sequence[str], rows: list[Sequence[Any]]) -> None:
    widths = [max(len(str(v)) for v in column) for column in zip(headers, *rows, strict=False)]
    for row in [headers, *rows]:
        print("  ".join(str(value).ljust(width) for value, width in zip(row, widths,
                                                                        strict=True)).rstrip())


def _status(args: argparse.Namespace) -> int:
    with AdminClient(args.server) as admin:
        records = admin.status()
    if args.json:
        print(json.dumps([dataclasses.asdict(r) | {"queued": r.queued, "unserved": r.unserved}
                          for r in records]))
    elif not records:
        print("no functions known")
    else:
        _print_table(["FUNCTION", "QUEUED", "RUNNING", "WORKERS", ""],
                     [[r.name, r.queued, r.running, r.workers,
                       "! no worker: these jobs wait" if r.unserved else ""] for r in records])
    return 0


def _workers(args: argparse.Namespace) -> int:
    with AdminClient(args.server) as admin:
        records = admin.workers()
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in records]))
    else:
        _print_table(["FD", "ADDRESS", "CLIENT ID", "FUNCTIONS"],
                     [[r.fd, r.ip, r.client_id, " ".join(r.functions) or "-"] for r in records])
    return 0


def _failed(args: argparse.Namespace) -> int:
    with AdminClient(args.server) as admin:
        if args.retry or args.drop:
            count = admin.retry_failed(args.retry) if args.retry else admin.drop_failed(args.drop)
            verb = "queued again" if args.retry else "dropped"
            print(json.dumps({verb.replace(" ", "_"): count}) if args.json
                  else f"{count} failed job(s) {verb}")
            return 0
        records = admin.show_failed()
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in records]))
    elif not records:
        print("no failed jobs")
    else:
        _print_table(["HANDLE", "FUNCTION", "ATTEMPTS", "FAILED AT", "ERROR"],
                     [[r.handle, r.function, r.attempts,
                       dt.datetime.fromtimestamp(r.failed_at).isoformat(sep=" "), r.error]
                      for r in records])
    return 0


def _parse_at(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BrokerError(f"--at {text!r} is neither epoch seconds nor an ISO 8601 time") from None
    return moment.timestamp()


class _ProgressBar:
    """Draws WORK_STATUS updates on stderr as ``[#####-----] 50% (5/10)``."""

    WIDTH = 30

    def __init__(self) -> None:
        self.drawn = False

    def __call__(self, numerator: int, denominator: int) -> None:
        share = min(1.0, numerator / denominator) if denominator > 0 else 0.0
        filled = int(share * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        sys.stderr.write(f"\r[{bar}] {share:4.0%} ({numerator}/{denominator})")
        sys.stderr.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")


def _submit(args: argparse.Namespace) -> int:
    data = args.data
    if not data and not sys.stdin.isatty():
        data = sys.stdin.buffer.read()
    priority = Priority[args.priority.upper()]
    with Client([args.server]) as client:
        if args.background or args.at:
            at = _parse_at(args.at) if args.at else None
            handle = client.submit_background(args.function, data, unique=args.unique,
                                              priority=priority, at=at)
            print(json.dumps({"handle": handle.handle}) if args.json else handle.handle)
            return 0
        progress = _ProgressBar()
        try:
            result = client.submit(args.function, data, unique=args.unique, priority=priority,
                                   timeout=args.timeout, on_status=progress)
        finally:
            progress.finish()
    if args.json:
        print(json.dumps({"handle": result.handle.handle,
                          "result": result.data.decode("utf-8", "replace")}))
    else:
        sys.stdout.buffer.write(result.data + (b"" if result.data.endswith(b"\n") else b"\n"))
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": _serve,
    "status": _status,
    "workers": _workers,
    "failed": _failed,
    "submit": _submit,
    "spooler": _spooler,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except BrokerError as exc:
        print(f"spoolgear {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
