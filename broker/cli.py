"""The ``spoolgear`` command: run the broker, look at it, submit jobs."""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import datetime as dt
import faulthandler
import fnmatch
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from broker import __version__, build
from broker.addresses import DEFAULT_SERVER
from broker.config import LOG_LEVELS, ServerConfig, read_config_file
from broker.errors import BrokerError, ConfigurationError
from broker.gearman.admin_client import AdminClient, FlowLimit
from broker.gearman.client import Client
from broker.options import add_options, option_values
from broker.protocol.priorities import Priority
from broker.tls import add_client_options, client_files
from broker.uwsgi_compat.spooler import SpoolerSettings
from broker.uwsgi_compat.spooler import run as run_spooler


def _parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The ``spoolgear`` parser, and its ``serve`` subparser (which a config file fills)."""
    parser = argparse.ArgumentParser(prog="spoolgear", description=__doc__)
    loop = "uvloop" if _uvloop_factory() else "asyncio"
    parser.add_argument(
        "--version",
        action="version",
        version=f"spoolgear {__version__} ({build.DESCRIPTION}, {loop} event loop)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the broker in the foreground")
    serve.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file of serve options, keyed by their names without the dashes "
        "(job-retries = 3); an option on the command line wins over the file",
    )
    ServerConfig.add_options(serve)

    def with_server(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument(
            "--server",
            "-s",
            default=DEFAULT_SERVER,
            help="broker address (default %(default)s)",
        )
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        add_client_options(sub)
        return sub

    with_server(commands.add_parser("status", help="queued and running jobs per function"))
    with_server(commands.add_parser("workers", help="connections and their functions"))
    with_server(
        commands.add_parser(
            "brokers", help="the brokers sharing a PostgreSQL store, and their jobs"
        )
    )
    failed = with_server(commands.add_parser("failed", help="show, replay or drop failed jobs"))
    action = failed.add_mutually_exclusive_group()
    action.add_argument("--retry", metavar="HANDLE|all", help="queue failed jobs again")
    action.add_argument("--drop", metavar="HANDLE|all", help="forget failed jobs")
    result = with_server(
        commands.add_parser(
            "result", help="a background job's state, or how it ended (kept --keep-results)"
        )
    )
    result.add_argument("handle", help="the job handle JOB_CREATED gave (H:host:number)")
    cancel = with_server(
        commands.add_parser(
            "cancel",
            help="cancel a queued or running job: it never runs (again); a running "
            "spoolgear worker stops it",
        )
    )
    cancel.add_argument("handle", help="the job handle JOB_CREATED gave (H:host:number)")
    with_server(commands.add_parser("limits", help="flow rules: rate and running limits, pauses"))
    for verb, says in (("pause", "hand out no job of"), ("resume", "hand out jobs again of")):
        paused = with_server(
            commands.add_parser(verb, help=f"{says} the functions a pattern names")
        )
        paused.add_argument("pattern", help="a function name, or an fnmatch pattern (mail.*)")
    limit = with_server(
        commands.add_parser("limit", help="limit job starts or running jobs, across workers")
    )
    limit.add_argument("pattern", help="a function name, or an fnmatch pattern (mail.*)")
    limit.add_argument("--rate", metavar="N/s|N/m|N/h|none", help="job starts per period")
    limit.add_argument("--running", metavar="N|none", help="jobs running at once")
    limit.add_argument(
        "--per-key", metavar="N|none", help="jobs running at once with one concurrency key"
    )
    submit = with_server(commands.add_parser("submit", help="submit a job"))
    submit.add_argument("function")
    submit.add_argument(
        "data", nargs="?", default="", help="payload (default: read stdin if piped)"
    )
    submit.add_argument("--background", "-b", action="store_true", help="do not wait")
    submit.add_argument("--priority", choices=["high", "normal", "low"], default="normal")
    submit.add_argument("--unique", "-u", default="", help="coalescing key")
    submit.add_argument("--at", help="run at this time: epoch seconds or ISO 8601 (background)")
    submit.add_argument("--timeout", type=float, help="seconds to wait for a foreground result")
    spooler = commands.add_parser("spooler", help="run uWSGI-style spool handlers")
    spooler.add_argument(
        "--import",
        dest="modules",
        action="append",
        required=True,
        metavar="MODULE",
        help="module (or .py file) with spool handlers (repeatable)",
    )
    add_options(SpoolerSettings, spooler)
    spooler.add_argument("--burst", action="store_true", help="exit once no job is left")
    add_client_options(spooler)
    spooler.add_argument(
        "--verbose",
        default="INFO",
        type=str.upper,
        choices=LOG_LEVELS,
        help="log level (default %(default)s)",
    )
    return parser, serve


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, over the ``serve --config`` file when one is given."""
    parser, serve = _parser()
    args = parser.parse_args(argv)
    if args.command != "serve" or not args.config:
        return args
    try:
        from_file = read_config_file(args.config)
    except BrokerError as exc:
        parser.exit(2, f"spoolgear serve: {exc}\n")
    repeated = {name for name in from_file if isinstance(from_file[name], list)}
    serve.set_defaults(**{name: from_file[name] for name in from_file.keys() - repeated})
    args = parser.parse_args(argv)
    for name in repeated:  # given on the command line, a repeatable option replaces the file's
        if getattr(args, name) is None:
            setattr(args, name, from_file[name])
    return args


def _spooler(args: argparse.Namespace) -> int:
    _configure_logging(args.verbose)
    settings = SpoolerSettings(**option_values(SpoolerSettings, args), tls=client_files(args))
    run_spooler(args.modules, settings, burst=args.burst)
    return 0


def _configure_logging(verbose: str) -> None:
    level = {"FATAL": "CRITICAL", "ALERT": "CRITICAL", "NOTICE": "INFO"}.get(verbose, verbose)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _serve(args: argparse.Namespace) -> int:
    # A fatal signal (SIGBUS from a store file made immutable under SQLite's mapping, say)
    # still leaves a line saying what happened and where.
    faulthandler.enable()
    config = ServerConfig.from_options(args)
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
        print(
            "  ".join(
                str(value).ljust(width) for value, width in zip(row, widths, strict=True)
            ).rstrip()
        )


def _status(args: argparse.Namespace) -> int:
    with AdminClient(args.server, tls=client_files(args)) as admin:
        records = admin.status()
        rules = admin.limits()
    if args.json:
        print(
            json.dumps(
                [
                    dataclasses.asdict(r) | {"queued": r.queued, "unserved": r.unserved}
                    for r in records
                ]
            )
        )
    elif not records:
        print("no functions known")
    else:
        _print_table(
            ["FUNCTION", "QUEUED", "RUNNING", "WORKERS", ""],
            [
                [
                    r.name,
                    r.queued,
                    r.running,
                    r.workers,
                    "; ".join(
                        filter(
                            None,
                            [
                                "! no worker: these jobs wait" if r.unserved else "",
                                _held_by(r.name, rules),
                            ],
                        )
                    ),
                ]
                for r in records
            ],
        )
    return 0


def _listing(
    args: argparse.Namespace,
    ask: Callable[[AdminClient], Sequence[Any]],
    header: list[str],
    row: Callable[[Any], list[object]],
) -> int:
    """One admin listing, as JSON or as a table."""
    with AdminClient(args.server, tls=client_files(args)) as admin:
        records = ask(admin)
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in records]))
    else:
        _print_table(header, [row(r) for r in records])
    return 0


def _workers(args: argparse.Namespace) -> int:
    return _listing(
        args,
        AdminClient.workers,
        ["FD", "ADDRESS", "CLIENT ID", "FUNCTIONS"],
        lambda r: [r.fd, r.ip, r.client_id, " ".join(r.functions) or "-"],
    )


def _brokers(args: argparse.Namespace) -> int:
    return _listing(
        args,
        AdminClient.show_brokers,
        ["ID", "BROKER", "STATE", "JOBS", "RUNNING"],
        lambda r: [r.id or "-", r.name, r.state, r.jobs, r.running],
    )


def _failed(args: argparse.Namespace) -> int:
    with AdminClient(args.server, tls=client_files(args)) as admin:
        if args.retry or args.drop:
            count = admin.retry_failed(args.retry) if args.retry else admin.drop_failed(args.drop)
            verb = "queued again" if args.retry else "dropped"
            print(
                json.dumps({verb.replace(" ", "_"): count})
                if args.json
                else f"{count} failed job(s) {verb}"
            )
            return 0
        records = admin.show_failed()
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in records]))
    elif not records:
        print("no failed jobs")
    else:
        _print_table(
            ["HANDLE", "FUNCTION", "ATTEMPTS", "FAILED AT", "ERROR"],
            [
                [
                    r.handle,
                    r.function,
                    r.attempts,
                    dt.datetime.fromtimestamp(r.failed_at).isoformat(sep=" "),
                    r.error,
                ]
                for r in records
            ],
        )
    return 0


def _cancel(args: argparse.Namespace) -> int:
    with AdminClient(args.server, tls=client_files(args)) as admin:
        if not admin.cancel(args.handle):
            raise BrokerError(f"the broker has no job {args.handle} (it ended, or never was)")
    print(json.dumps({"cancelled": args.handle}) if args.json else f"cancelled {args.handle}")
    return 0


def _result(args: argparse.Namespace) -> int:
    with AdminClient(args.server, tls=client_files(args)) as admin:
        found = admin.result(args.handle)
    if found is None:
        raise BrokerError(
            f"the broker knows no job {args.handle} (never given, or its result expired)"
        )
    if args.json:
        fields = dataclasses.asdict(found)
        for name in ("value", "data"):
            raw = fields[name]
            fields[name] = None if raw is None else base64.b64encode(raw).decode()
        print(json.dumps(fields))
        return 0
    when = {
        "enqueued": found.enqueued_at,
        "started": found.started_at,
        "last started": found.last_started_at if found.attempts > 1 else None,
        "finished": found.finished_at,
    }
    lines = [("handle", found.handle), ("function", found.function), ("status", found.status)]
    lines += [(name, _time(at)) for name, at in when.items() if at is not None]
    workers = f" ({', '.join(found.workers)})" if any(found.workers) else ""
    lines.append(("attempts", f"{found.attempts}{workers}"))
    lines += [(f"error {n}", error) for n, error in enumerate(found.errors, 1)]
    if found.status == "successful":
        lines.append(("value", _shown(found.value, found.value_size)))
    width = max(len(name) for name, _ in lines)
    for name, text in lines:
        print(f"{name:<{width}}  {text}")
    return 0


def _time(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch).isoformat(sep=" ", timespec="milliseconds")


def _shown(value: bytes | None, size: int) -> str:
    """A result's value as text when it is UTF-8, else its size."""
    if value is None:
        return f"not kept: {size} bytes, over the broker's --max-result-bytes"
    try:
        return value.decode()
    except UnicodeDecodeError:
        return f"{size} bytes of binary data (--json gives them in base64)"


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
    with Client([args.server], tls=client_files(args)) as client:
        if args.background or args.at:
            at = _parse_at(args.at) if args.at else None
            handle = client.submit_background(
                args.function, data, unique=args.unique, priority=priority, at=at
            )
            print(json.dumps({"handle": handle.handle}) if args.json else handle.handle)
            return 0
        progress = _ProgressBar()
        try:
            result = client.submit(
                args.function,
                data,
                unique=args.unique,
                priority=priority,
                timeout=args.timeout,
                on_status=progress,
            )
        finally:
            progress.finish()
    if args.json:
        print(
            json.dumps(
                {"handle": result.handle.handle, "result": result.data.decode("utf-8", "replace")}
            )
        )
    else:
        sys.stdout.buffer.write(result.data + (b"" if result.data.endswith(b"\n") else b"\n"))
    return 0


def _held_by(function: str, rules: list[FlowLimit]) -> str:
    """What the flow rules naming ``function`` do to it, for ``status``."""
    said = []
    for rule in rules:
        if fnmatch.fnmatchcase(function, rule.pattern):
            limits = [
                "paused" if rule.paused else "",
                f"at most {rule.rate}" if rule.rate else "",
                f"{rule.max_running} running" if rule.max_running else "",
                f"{rule.per_key} per key" if rule.per_key else "",
            ]
            said.append(f"{', '.join(filter(None, limits))} ({rule.pattern})")
    return "; ".join(said)


def _limits(args: argparse.Namespace) -> int:
    with AdminClient(args.server, tls=client_files(args)) as admin:
        if args.command == "pause":
            admin.pause(args.pattern)
        elif args.command == "resume":
            admin.resume(args.pattern)
        elif args.command == "limit":
            if args.rate is None and args.running is None and args.per_key is None:
                raise ConfigurationError("give --rate, --running or --per-key")
            admin.limit(args.pattern, rate=args.rate, running=args.running, per_key=args.per_key)
        rules = admin.limits()
    if args.json:
        print(json.dumps([dataclasses.asdict(rule) for rule in rules]))
    elif not rules:
        print("no limits and no paused functions")
    else:
        _print_table(
            ["PATTERN", "RATE", "MAX RUNNING", "PER KEY", "PAUSED", "RUNNING", "QUEUED"],
            [
                [
                    r.pattern,
                    r.rate or "-",
                    "-" if r.max_running is None else r.max_running,
                    "-" if r.per_key is None else r.per_key,
                    "paused" if r.paused else "-",
                    r.running,
                    r.queued,
                ]
                for r in rules
            ],
        )
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": _serve,
    "status": _status,
    "workers": _workers,
    "brokers": _brokers,
    "failed": _failed,
    "result": _result,
    "cancel": _cancel,
    "limits": _limits,
    "limit": _limits,
    "pause": _limits,
    "resume": _limits,
    "submit": _submit,
    "spooler": _spooler,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    try:
        return _COMMANDS[args.command](args)
    except BrokerError as exc:
        print(f"spoolgear {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
