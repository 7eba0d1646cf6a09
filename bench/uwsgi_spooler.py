"""Side by side: a real uWSGI spooler (Debian 2.0.21) and spoolgear's uwsgi door.

The same raw-socket client sends spool packets (a new connection per packet, as
Perl's Net::uwsgi does) to both; the same handler (``spool_handler.py``) notes
when each task starts. uWSGI writes spool files without fsync; spoolgear answers
only once the job is committed to its SQLite store. Scenarios:

- enqueue rate: 1, 4 and 16 concurrent senders, one consumer running; spoolgear at
  ``--sync full`` (fsync, the default) and at ``--sync normal`` (uWSGI's own promise);
- enqueue-to-start latency with busy consumers: two consumers, each task takes
  20 ms, one task every 12 ms (consumers are busy most of the time, never all at once);
- the busy-spooler gap (a busy uWSGI spooler sleeps --spooler-frequency between scans): one
  consumer, 20 tasks of 50 ms, one every 10 ms, default --spooler-frequency (30 s);
- drain: tasks queued with no consumer, then two consumers; rate and duplicates;
- a spool directory uWSGI wrote, processed by its spooler and (a copy) by
  ``spoolgear serve --spool-ingest`` with two spoolgear spoolers;
- the floor: the same senders against ``uwsgi_answer.c``, a C server that answers each
  packet at once and stores nothing, the most any spooler could take in here.

Usage: ``python bench/uwsgi_spooler.py [--scale 0.5]`` (``make bench`` runs it too).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
from ports import free_port, wait_for_port  # noqa: E402

from broker.admin import AdminClient  # noqa: E402
from broker.banner import read_banner  # noqa: E402
from broker.uwsgi_client import send_spool  # noqa: E402

# A side is a context factory: (workdir, consumer processes) -> uwsgi address.
Side = Callable[[Path, int], AbstractContextManager[str]]


def handler_env(workdir: Path) -> dict[str, str]:
    return {**os.environ, "SPOOL_BENCH_LOG": str(workdir / "log"), "PYTHONPATH": str(ROOT)}


@contextmanager
def uwsgi_side(workdir: Path, consumers: int) -> Iterator[str]:
    """A uWSGI instance receiving on a socket; 0 consumers = --spooler-external (no spooler)."""
    binary = shutil.which("uwsgi")
    if binary is None:
        raise SystemExit("uWSGI is not installed: run `make peers` (as root) first")
    spool = workdir / "spool"
    spool.mkdir(exist_ok=True)
    spooler = (
        ["--spooler", str(spool), "--spooler-processes", str(consumers)]
        if consumers
        else ["--spooler-external", str(spool)]
    )
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--plugin",
            "python3,spooler",
            "--master",
            "--socket",
            f"127.0.0.1:{port}",
            *spooler,
            "--spooler-quiet",
            "--disable-logging",
            "--pythonpath",
            str(BENCH),
            "--spooler-python-import",
            "spool_handler",
            "--processes",
            "2",
            "--buffer-size",
            "65535",
        ],
        env=handler_env(workdir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait()


_brokers: dict[Path, tuple[str, str]] = {}


@contextmanager
def spoolgear_side(workdir: Path, consumers: int) -> Iterator[str]:
    """spoolgear's broker for ``workdir`` (started once, kept) and ``consumers`` spoolers."""
    gearman, door = _brokers[workdir]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "broker.cli",
                "spooler",
                "--import",
                "spool_handler",
                "-s",
                gearman,
                "--verbose",
                "ERROR",
            ],
            cwd=BENCH,
            env=handler_env(workdir),
        )
        for _ in range(consumers)
    ]
    try:
        with AdminClient(gearman) as admin:
            while sum("uwsgi_spooler" in w.functions for w in admin.workers()) < consumers:
                time.sleep(0.02)
        yield door
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait()


@contextmanager
def spoolgear_broker(workdir: Path, sync: str = "full", *options: str) -> Iterator[None]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "broker.cli",
            "serve",
            "--port",
            "0",
            "--store",
            f"sqlite:{workdir / 'db'}",
            "--sync",
            sync,
            "--uwsgi-socket",
            "127.0.0.1:0",
            *options,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    bound = read_banner(process.stdout.readline())
    _brokers[workdir] = (bound.gearman, bound.first("uwsgi"))
    try:
        yield
    finally:
        process.terminate()
        process.wait()


def spool(address: str, task_id: str, sleep: float = 0.0) -> None:
    values = {b"id": task_id.encode(), b"t0": b"%.6f" % time.time()}
    if sleep:
        values[b"sleep"] = b"%g" % sleep
    send_spool(address, values)


def log_lines(workdir: Path, scenario: str) -> list[list[str]]:
    """The handler's log lines of one scenario's tasks (their ids start with ``scenario``):
    a task an earlier scenario left queued may still run meanwhile."""
    log = workdir / "log"
    lines = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
    return [line for line in lines if line[0].startswith(scenario)]


def wait_for_tasks(workdir: Path, count: int, timeout: float, scenario: str) -> list[list[str]]:
    """The log lines of ``count`` tasks of ``scenario``, or of those started within
    ``timeout`` seconds, said so (uWSGI's spooler may sleep 30 s between looks)."""
    deadline = time.monotonic() + timeout
    while len(lines := log_lines(workdir, scenario)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    if len(lines) < count:
        print(
            f"{workdir.name}: only {len(lines)} of {count} tasks of scenario {scenario!r}"
            f" started within {timeout:g} s; the figures count those"
        )
    return lines


def reset_log(workdir: Path) -> None:
    (workdir / "log").unlink(missing_ok=True)


def enqueue_rate(side: Side, workdir: Path, total: int, clients: int) -> float:
    """Acknowledged packets per second, ``clients`` threads sending ``total`` in all."""
    reset_log(workdir)
    with side(workdir, 1) as address:
        rate = send_all(address, total, clients)
        wait_for_tasks(workdir, total, 60, f"e{clients}-")
    return rate


def send_all(address: str, total: int, clients: int) -> float:
    """Packets per second answered at ``address``, ``clients`` threads sending ``total``."""

    def send(client: int) -> None:
        for n in range(total // clients):
            spool(address, f"e{clients}-{client}-{n}")

    threads = [threading.Thread(target=send, args=(c,)) for c in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return total / (time.perf_counter() - started)


def floor_rates(workdir: Path, total: int) -> dict[int, float] | None:
    """Intake of ``uwsgi_answer.c`` (answers each packet, stores nothing) with each number
    of senders in ``SENDERS``; None without a C compiler."""
    compiler = shutil.which("cc")
    if compiler is None:
        print("no C compiler: the floor rows are left out")
        return None
    binary = workdir / "uwsgi_answer"
    subprocess.run([compiler, "-O2", "-o", str(binary), str(BENCH / "uwsgi_answer.c")], check=True)
    port = free_port()
    process = subprocess.Popen([str(binary), str(port)])
    try:
        wait_for_port(port)
        return {n: send_all(f"127.0.0.1:{port}", total, n) for n in SENDERS}
    finally:
        process.kill()
        process.wait()


def latency(side: Side, workdir: Path, tasks: int) -> tuple[float, float, float]:
    """Enqueue-to-start p50/p99/max in ms: two consumers, 20 ms tasks, one every 12 ms."""
    reset_log(workdir)
    with side(workdir, 2) as address:
        for n in range(tasks):
            spool(address, f"l{n}", sleep=0.02)
            time.sleep(0.012)
        lines = wait_for_tasks(workdir, tasks, 60, "l")
    waits = sorted((float(start) - float(t0)) * 1000 for _, t0, start, _, _ in lines)
    return statistics.median(waits), waits[int(len(waits) * 0.99) - 1], waits[-1]


def busy_gap(side: Side, workdir: Path) -> float:
    """Seconds until the last of 20 tasks of 50 ms (one every 10 ms, one consumer) started."""
    reset_log(workdir)
    with side(workdir, 1) as address:
        first = time.time()
        for n in range(20):
            spool(address, f"g{n}", sleep=0.05)
            time.sleep(0.01)
        lines = wait_for_tasks(workdir, 20, 60, "g")
    return max(float(start) for _, _, start, _, _ in lines) - first


def drain(side: Side, workdir: Path, total: int) -> tuple[float, int, int]:
    """Tasks per second for two consumers on ``total`` queued tasks; duplicates; missing."""
    reset_log(workdir)
    with side(workdir, 0) as address:
        for n in range(total):
            spool(address, f"d{n}")
    with side(workdir, 2):
        wait_for_tasks(workdir, total, 120, "d")
        time.sleep(0.5)  # a duplicate would show up now
        lines = log_lines(workdir, "d")
    ids = [line[0] for line in lines]
    elapsed = max(float(line[3]) for line in lines) - min(float(line[2]) for line in lines)
    return len(set(ids)) / elapsed, len(ids) - len(set(ids)), total - len(set(ids))


SENDERS = (1, 4, 16)


def enqueue_rates(side: Side, workdir: Path, total: int) -> dict[int, float]:
    """Intake with each number of concurrent senders in ``SENDERS``."""
    return {senders: enqueue_rate(side, workdir, total, senders) for senders in SENDERS}


def ingestion(workdir: Path, total: int) -> tuple[float, float]:
    """One spool directory of ``total`` files written by uWSGI, processed by uWSGI's
    spooler and, a copy of it, by ``spoolgear serve --spool-ingest`` with spoolgear
    spoolers (two consumers each): tasks per second from the start of the processes to
    the end of the last task."""
    uwsgi_dir, spoolgear_dir = workdir / "uwsgi", workdir / "spoolgear"
    for directory in (uwsgi_dir, spoolgear_dir):
        directory.mkdir()
    with uwsgi_side(uwsgi_dir, 0) as address:
        for n in range(total):
            spool(address, f"i{n}")
    shutil.copytree(uwsgi_dir / "spool", spoolgear_dir / "ingest")
    started = time.time()
    with uwsgi_side(uwsgi_dir, 2):
        theirs = processed_rate(wait_for_tasks(uwsgi_dir, total, 120, "i"), started)
    started = time.time()
    ingest = ("--spool-ingest", str(spoolgear_dir / "ingest"))
    with spoolgear_broker(spoolgear_dir, "full", *ingest), spoolgear_side(spoolgear_dir, 2):
        ours = processed_rate(wait_for_tasks(spoolgear_dir, total, 120, "i"), started)
    return theirs, ours


def processed_rate(lines: list[list[str]], started: float) -> float:
    """Tasks per second from ``started`` (epoch seconds) to the end of the last of them."""
    return len(lines) / (max(float(line[3]) for line in lines) - started)


@dataclass
class SideResult:
    enqueue: dict[int, float]
    latency: tuple[float, float, float]
    gap: float
    drain: tuple[float, int, int]


def tasks_per_run(scale: float) -> int:
    return max(100, int(2000 * scale))


def measure(side: Side, workdir: Path, scale: float) -> SideResult:
    total = tasks_per_run(scale)
    return SideResult(
        enqueue_rates(side, workdir, total),
        latency(side, workdir, max(50, int(250 * scale))),
        busy_gap(side, workdir),
        drain(side, workdir, total),
    )


def run(scale: float) -> None:
    with tempfile.TemporaryDirectory() as temp:
        uwsgi_dir, spoolgear_dir = Path(temp) / "uwsgi", Path(temp) / "spoolgear"
        uwsgi_dir.mkdir()
        spoolgear_dir.mkdir()
        theirs = measure(uwsgi_side, uwsgi_dir, scale)
        with spoolgear_broker(spoolgear_dir):
            ours = measure(spoolgear_side, spoolgear_dir, scale)
        normal_dir = Path(temp) / "normal"
        normal_dir.mkdir()
        with spoolgear_broker(normal_dir, "normal"):
            normal = enqueue_rates(spoolgear_side, normal_dir, tasks_per_run(scale))
        ingest_dir = Path(temp) / "ingest"
        ingest_dir.mkdir()
        ingested = ingestion(ingest_dir, tasks_per_run(scale))
        floor = floor_rates(Path(temp), tasks_per_run(scale))
    rows: list[tuple[str, float, float, str, bool]] = [
        *(
            (f"enqueue/s, {n} senders, normal", theirs.enqueue[n], normal[n], ">= 2.0", True)
            for n in SENDERS
            if n < 16
        ),
        *(
            (f"enqueue/s, {n} senders, full", theirs.enqueue[n], ours.enqueue[n], "", True)
            for n in SENDERS
        ),
        ("start latency p50 ms", theirs.latency[0], ours.latency[0], "", False),
        ("start latency p99 ms", theirs.latency[1], ours.latency[1], "p99 < 5 ms", False),
        ("start latency max ms", theirs.latency[2], ours.latency[2], "", False),
        ("busy gap: last start s", theirs.gap, ours.gap, "", False),
        ("drain/s, 2 consumers", theirs.drain[0], ours.drain[0], "", True),
        ("drain duplicates", theirs.drain[1], ours.drain[1], "0", False),
        ("drain missing", theirs.drain[2], ours.drain[2], "0", False),
        ("spool dir processed/s", *ingested, "", True),
        *(
            (f"floor: {n} senders", theirs.enqueue[n], floor[n], "answers, stores nothing", True)
            for n in SENDERS
            if floor is not None
        ),
    ]
    print(
        f"\nuWSGI spooler (Debian 2.0.21, files, no fsync) vs spoolgear --uwsgi-socket "
        f"(SQLite; --sync normal: no fsync, as uWSGI; full: fsync, the default); "
        f"{tasks_per_run(scale)} tasks per run; target at 16 senders, full: >= 1.0"
    )
    print(f"{'metric':<28}{'uWSGI':>14}{'spoolgear':>14}{'ratio':>9}  target")
    for metric, their_value, our_value, target, higher_is_better in rows:
        if their_value and our_value:
            ratio = our_value / their_value if higher_is_better else their_value / our_value
            shown = f"{ratio:>8.2f}x"
        else:
            shown = f"{'':>9}"
        print(f"{metric:<28}{their_value:>14,.1f}{our_value:>14,.1f}{shown}  {target}")
    print("ratio: above 1.0 = spoolgear better")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply the task counts (default 1.0 = 2,000 per scenario)",
    )
    run(parser.parse_args().scale)
    return 0


if __name__ == "__main__":
    sys.exit(main())
