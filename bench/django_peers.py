"""What a Django project pays, side by side: spoolgear against Celery, RQ, Dramatiq, Huey,
procrastinate and django-tasks-db, with one trivial task (``bench/peers_site``).

For each system, on a fresh queue server started here (Redis, PostgreSQL or a spoolgear
broker; Huey's SQLite store has none):

1. **enqueue**: one Django process calls the task's enqueue N times, one call after another,
   as N web requests would (``manage.py bench_enqueue``), no worker running: calls a second,
   and each call's p50 and p99;
2. **drain**: then two worker processes run those N tasks; the rate is taken between the
   10th and the 90th percentile of the tasks' start times, so the workers' start-up counts
   for no one;
3. **start at idle**: with the workers idle, one task at a time, from just before the
   enqueue call to the task's start (p50 and worst of 20);
4. **kill -9**: with the workers stopped, 500 more tasks are enqueued (each call has
   returned), the queue server is killed with SIGKILL and started again on its files, and
   the workers run what is left: how many of the acknowledged tasks survive.

Each peer runs in its own virtual environment (``.venv/peers``), installed from PyPI at
the pinned versions below, with the Django version spoolgear's own environment has. Redis
and PostgreSQL are Debian's (``make peers``). Each is set up as its documentation
recommends for production (``System.how``).

Usage: ``python bench/django_peers.py [--scale 1.0] [--only celery,jbox]``; ``make bench``
runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import django

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SITE = BENCH / "peers_site"
VENVS = ROOT / ".venv" / "peers"
sys.path[:0] = [str(ROOT)]

import chart  # noqa: E402  (bench/, the script's directory)
import projects  # noqa: E402
from ports import free_port, wait_for_port  # noqa: E402
from servers import start_spoolgear  # noqa: E402

from tests.postgres import Cluster, fresh_database, run_postgres  # noqa: E402

SURVIVAL_TASKS = 500
IDLE_SAMPLES = 20
WARM_UP = 20
"""Calls ``bench_enqueue`` makes before timing (they queue tasks too)."""
RECORD_SIZE = 16
"""Bytes a task appends to the marks file (``marks/record.py``)."""
PSYCOPG = "psycopg[binary]==3.3.9"


@dataclass(frozen=True)
class System:
    label: str
    setting: str
    """``BENCH_SYSTEM`` in the project's settings."""
    server: str
    """``spoolgear``, ``spoolgear-memory``, ``redis``, ``redis-always``, ``postgresql`` or
    ``none``."""
    workers: tuple[tuple[str, ...], ...]
    """Worker commands; ``{python}`` and ``{bin}`` are the environment's."""
    how: str
    requirements: tuple[str, ...] = ()
    """Pinned PyPI requirements of its own environment; none: spoolgear's environment."""
    drain_tasks: int = 20_000


def manage(*args: str) -> tuple[str, ...]:
    return ("{python}", "manage.py", *args)


TWICE = 2
GEARMAN_WORKER = "`manage.py gearman_worker` x2, default settings"
SYSTEMS = [
    System(
        "spoolgear @gearman_task",
        "jbox",
        "spoolgear",
        (manage("gearman_worker", "-a", "marks", "-n", "touch"),) * TWICE,
        f"broker with its default SQLite store (fsync per commit); {GEARMAN_WORKER}",
    ),
    System(
        "spoolgear @task",
        "task-api",
        "spoolgear",
        (manage("gearman_worker", "-a", "marks", "-n", "api"),) * TWICE,
        f"the same broker; {GEARMAN_WORKER}",
    ),
    System(
        "spoolgear django.tasks",
        "tasks-framework",
        "spoolgear",
        (manage("gearman_worker", "--tasks-queue", "default"),) * TWICE,
        f"the same broker, results kept by it; {GEARMAN_WORKER}",
    ),
    System(
        "spoolgear, memory store (the floor)",
        "jbox",
        "spoolgear-memory",
        (manage("gearman_worker", "-a", "marks", "-n", "touch"),) * TWICE,
        "broker with `--store memory:` (nothing on disk, nothing survives); " + GEARMAN_WORKER,
    ),
    System(
        "Celery 5.7, Redis",
        "celery",
        "redis",
        (("{bin}/celery", "-A", "marks.celery_app", "worker", "-c", "2", "-l", "WARNING"),),
        "Redis 7 as Debian ships it (RDB snapshots, no AOF); prefork pool of 2, results ignored",
        ("celery[redis]==5.7.0",),
    ),
    System(
        "Celery 5.7, Redis always",
        "celery",
        "redis-always",
        (("{bin}/celery", "-A", "marks.celery_app", "worker", "-c", "2", "-l", "WARNING"),),
        "Redis with `appendonly yes`, `appendfsync always`; prefork pool of 2",
        ("celery[redis]==5.7.0",),
    ),
    System(
        "RQ 3.0, Redis",
        "rq",
        "redis",
        (("{python}", "-m", "marks.rq_jobs"),) * TWICE,
        "Redis as Debian ships it; 2 `Worker`s (a work horse forked per job) from a script "
        "that imports Django first, as RQ's docs advise",
        ("rq==3.0.0",),
        drain_tasks=3_000,
    ),
    System(
        "Dramatiq 2.2, Redis",
        "dramatiq",
        "redis",
        (("{bin}/dramatiq", "marks.dramatiq_actors", "-p", "2"),),
        "Redis as Debian ships it; `dramatiq -p 2` (8 threads each, the default)",
        ("dramatiq[redis]==2.2.1",),
    ),
    System(
        "Huey 3.5, Redis",
        "huey-redis",
        "redis",
        (manage("run_huey", "-w", "2", "-k", "process"),),
        "Redis as Debian ships it; `run_huey -w 2 -k process`",
        ("huey==3.5.4", "redis==8.2.0"),
    ),
    System(
        "Huey 3.5, Redis always",
        "huey-redis",
        "redis-always",
        (manage("run_huey", "-w", "2", "-k", "process"),),
        "Redis with `appendonly yes`, `appendfsync always`; `run_huey -w 2 -k process`",
        ("huey==3.5.4", "redis==8.2.0"),
    ),
    System(
        "Huey 3.5, SQLite",
        "huey-sqlite",
        "none",
        (manage("run_huey", "-w", "2", "-k", "process"),),
        "`SqliteHuey` (a file written by the web process itself, synchronous FULL); "
        "`run_huey -w 2 -k process`",
        ("huey==3.5.4",),
    ),
    System(
        "procrastinate 3.10, PostgreSQL",
        "procrastinate",
        "postgresql",
        (manage("procrastinate", "worker"),) * TWICE,
        "PostgreSQL 15 as Debian ships it, the project's database; "
        "`manage.py procrastinate worker` x2",
        ("procrastinate[django]==3.10.0", PSYCOPG),
        drain_tasks=5_000,
    ),
    System(
        "django-tasks-db 0.12, PostgreSQL",
        "django-tasks-db",
        "postgresql",
        (manage("db_worker", "--queue-name", "default"),) * TWICE,
        "PostgreSQL 15 as Debian ships it, the project's database; `manage.py db_worker` x2",
        ("django-tasks-db==0.12.0", "django-tasks==0.12.0", PSYCOPG),
        drain_tasks=3_000,
    ),
]


@dataclass
class Figures:
    enqueue_rate: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    drain_rate: float = 0.0
    start_p50_ms: float = 0.0
    start_max_ms: float = 0.0
    survived: str = ""


def environment_of(system: System) -> tuple[str, str]:
    """The python and the bin directory ``system`` runs with, its venv made when missing."""
    if not system.requirements:
        return sys.executable, str(Path(sys.executable).parent)
    venv = VENVS / system.setting
    wanted = "\n".join([f"django=={django.__version__}", *system.requirements]) + "\n"
    pinned = venv / "bench-requirements.txt"
    if not pinned.exists() or pinned.read_text() != wanted:
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        installed = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", *wanted.split()],
            capture_output=True,
            text=True,
        )
        if installed.returncode != 0:
            raise RuntimeError(f"installing {system.label} failed:\n{installed.stderr}")
        pinned.write_text(wanted)
    return str(venv / "bin" / "python"), str(venv / "bin")


class QueueServer:
    """A queue server on its own files: ``variables`` tell the project where it is,
    ``crash`` kills it with SIGKILL and starts it again on the same files."""

    def __init__(self) -> None:
        self.variables: dict[str, str] = {}

    def crash(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Servers this bench started stop here; a shared one stays."""


class NoServer(QueueServer):
    def crash(self) -> None:
        raise LookupError("no server: the web process writes the queue's file itself")


class ProcessServer(QueueServer):
    """A server this bench runs as a child process: ``start`` it again after a SIGKILL."""

    process: subprocess.Popen[str]

    def start(self) -> None:
        raise NotImplementedError

    def crash(self) -> None:
        self.process.kill()
        self.process.wait()
        self.start()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


class Redis(ProcessServer):
    SNAPSHOTS = "3600 1 300 100 60 10000"
    """Redis 7's default ``save`` rules, as Debian's redis.conf has them."""

    def __init__(self, directory: Path, always: bool) -> None:
        self.port = free_port()
        persistence = ("--appendfsync", "always") if always else ()
        self.command = [
            "redis-server",
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory)),
            *("--save", self.SNAPSHOTS, "--appendonly", "yes" if always else "no"),
            *persistence,
        ]
        self.variables = {"BENCH_REDIS": f"redis://127.0.0.1:{self.port}/0"}
        self.start()

    def start(self) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed: `make bench` (as root) installs it")
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, text=True)
        wait_for_port(self.port)


class Spoolgear(ProcessServer):
    def __init__(self, store: str) -> None:
        self.store = store
        self.start()

    def start(self) -> None:
        self.process, bound = start_spoolgear(self.store)
        self.variables = {"GEARMAN_SERVER": bound.gearman}


class PostgreSQL(QueueServer):
    def __init__(self, cluster: Cluster, database: str) -> None:
        self.cluster = cluster
        self.variables = {"BENCH_DATABASE": fresh_database(cluster.url, database)}

    def crash(self) -> None:
        """SIGKILL to the postmaster and every backend, then a start: crash recovery."""
        postmaster = int(
            (self.cluster.directory / "data" / "postmaster.pid").read_text().split()[0]
        )
        subprocess.run(["pkill", "-KILL", "-P", str(postmaster)], check=False)
        os.kill(postmaster, signal.SIGKILL)
        while Path(f"/proc/{postmaster}").exists():
            time.sleep(0.01)
        self.cluster.start()


@contextmanager
def queue_server(
    kind: str, scratch: Path, cluster: Cluster | None, name: str
) -> Iterator[QueueServer]:
    server: ProcessServer
    if kind == "postgresql":
        assert cluster is not None
        yield PostgreSQL(cluster, name)
        return
    if kind == "none":
        yield NoServer()
        return
    directory = Path(tempfile.mkdtemp(dir=scratch))
    if kind.startswith("spoolgear"):
        server = Spoolgear(
            "memory:" if kind == "spoolgear-memory" else f"sqlite:{directory}/broker.db"
        )
    else:
        server = Redis(directory, always=kind == "redis-always")
    try:
        yield server
    finally:
        server.stop()


class Run:
    """One system against one queue server: the project's environment, its workers."""

    def __init__(self, system: System, server: QueueServer, scratch: Path) -> None:
        self.system = system
        self.server = server
        self.python, self.bin = environment_of(system)
        self.marks = scratch / f"{system.setting}-{system.server}.marks"
        self.log = scratch / f"{system.setting}-{system.server}.log"
        self.workers: list[subprocess.Popen[bytes]] = []

    def environment(self) -> dict[str, str]:
        paths = [str(SITE)] + ([str(ROOT)] if not self.system.requirements else [])
        return {
            **os.environ,
            **self.server.variables,
            "BENCH_SYSTEM": self.system.setting,
            "BENCH_MARKS": str(self.marks),
            "BENCH_HUEY_FILE": str(self.marks.with_suffix(".huey.sqlite3")),
            "DJANGO_SETTINGS_MODULE": "peersite.settings",
            "PYTHONPATH": os.pathsep.join(paths),
        }

    def done(self) -> int:
        return self.marks.stat().st_size // RECORD_SIZE if self.marks.exists() else 0

    def manage(self, *args: str) -> str:
        return projects.manage(self.python, SITE, self.environment(), *args)

    def bench_enqueue(self, *args: str) -> dict[str, Any]:
        report: dict[str, Any] = json.loads(self.manage("bench_enqueue", *args).splitlines()[-1])
        return report

    def start_workers(self) -> None:
        with self.log.open("ab") as log:
            for command in self.system.workers:
                argv = [part.format(python=self.python, bin=self.bin) for part in command]
                self.workers.append(
                    subprocess.Popen(argv, cwd=SITE, env=self.environment(), stdout=log, stderr=log)
                )

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.terminate()
        for worker in self.workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        self.workers = []

    def wait_for(self, count: int, stall: float) -> int:
        """Until ``count`` tasks are done or none finishes for ``stall`` seconds."""
        last, moved = self.done(), time.monotonic()
        while last < count and time.monotonic() - moved < stall:
            time.sleep(0.02)
            now_done = self.done()
            if now_done != last:
                last, moved = now_done, time.monotonic()
            if any(worker.poll() is not None for worker in self.workers):
                raise RuntimeError(f"a worker of {self.system.label} exited: see {self.log}")
        return last


def drain_rate(marks: Path, first: int, count: int) -> float:
    """Tasks a second between the 10th and the 90th percentile of the start times of the
    ``count`` tasks recorded after the first ``first``."""
    raw = marks.read_bytes()[first * RECORD_SIZE : (first + count) * RECORD_SIZE]
    starts = sorted(started for started, _stamp in struct.iter_unpack("dd", raw))
    low, high = int(len(starts) * 0.1), int(len(starts) * 0.9)
    return float((high - low) / (starts[high] - starts[low]))


def measure(system: System, server: QueueServer, scratch: Path, scale: float) -> Figures:
    run = Run(system, server, scratch)
    figures = Figures()
    if system.server == "postgresql":
        run.manage("migrate", "--verbosity", "0")
    tasks = max(200, int(system.drain_tasks * scale))
    enqueued = run.bench_enqueue("--calls", str(tasks))
    figures.enqueue_rate = enqueued["rate"]
    figures.p50_ms = enqueued["p50_ms"]
    figures.p99_ms = enqueued["p99_ms"]
    queued = tasks + WARM_UP
    run.start_workers()
    try:
        if run.wait_for(queued, stall=60) < queued:
            raise RuntimeError(f"{system.label} ran {run.done()} of {queued} tasks: see {run.log}")
        figures.drain_rate = drain_rate(run.marks, 0, queued)
        idle = run.bench_enqueue("--idle", str(IDLE_SAMPLES))["start_ms"]
        figures.start_p50_ms = statistics.median(idle)
        figures.start_max_ms = max(idle)
    finally:
        run.stop_workers()
    before = run.done()
    run.bench_enqueue("--calls", str(SURVIVAL_TASKS))
    acknowledged = SURVIVAL_TASKS + WARM_UP
    try:
        server.crash()
    except LookupError:
        figures.survived = "no server"
        return figures
    run.start_workers()
    try:
        survived = run.wait_for(before + acknowledged, stall=10) - before
    finally:
        run.stop_workers()
    figures.survived = f"{survived}/{acknowledged}"
    return figures


def flush_ms(directory: Path, samples: int = 200) -> float:
    """The disk's own cost of a durable write here: p50 of a small write and its fsync."""
    spans = []
    with open(directory / "flush-probe", "wb") as probe:
        for _ in range(samples):
            started = time.perf_counter()
            probe.write(b"x" * 64)
            probe.flush()
            os.fsync(probe.fileno())
            spans.append(time.perf_counter() - started)
    return statistics.median(spans) * 1000


PERSISTING_PEERS = ("redis-always", "postgresql")
"""Peers behind a socket that make each job durable before acknowledging it."""
FLOOR_ROUNDS = 3
FLOOR_CALLS = 3_000


@dataclass
class Floor:
    """spoolgear's jbox enqueue p50 (ms) on its SQLite store and on the memory store, and a
    small write's fsync, measured in turn ``FLOOR_ROUNDS`` times: the enqueue target is a
    difference of the three, steadier taken from rounds side by side than from one run."""

    durable: list[float] = field(default_factory=list)
    memory: list[float] = field(default_factory=list)
    flush: list[float] = field(default_factory=list)

    def overhead(self) -> float:
        """What a durable enqueue costs beyond the memory store and the disk's flush."""
        medians = [statistics.median(values) for values in (self.durable, self.memory, self.flush)]
        return medians[0] - medians[1] - medians[2]


def measure_floor(scratch: Path) -> Floor:
    floor = Floor()
    jbox = next(system for system in SYSTEMS if system.setting == "jbox")
    for _ in range(FLOOR_ROUNDS):
        for kind, values in (("spoolgear", floor.durable), ("spoolgear-memory", floor.memory)):
            with queue_server(kind, scratch, None, "floor") as server:
                report = Run(jbox, server, scratch).bench_enqueue("--calls", str(FLOOR_CALLS))
                values.append(report["p50_ms"])
        floor.flush.append(flush_ms(scratch))
    return floor


def print_table(results: dict[str, Figures]) -> None:
    print("\nDjango projects side by side: one trivial task, enqueued from one Django process")
    print(f"one call at a time, drained by two worker processes ({os.cpu_count()} cores)")
    print(
        "| system | enqueue/s | p50 ms | p99 ms | drain/s, 2 workers "
        "| start at idle p50 / max ms | kill -9: acknowledged tasks run after |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, f in results.items():
        print(
            f"| {label} | {f.enqueue_rate:,.0f} | {f.p50_ms:.3f} | {f.p99_ms:.3f} | "
            f"{f.drain_rate:,.0f} | {f.start_p50_ms:.1f} / {f.start_max_ms:.1f} | {f.survived} |"
        )
    for system in SYSTEMS:
        if system.label in results:
            print(f"- {system.label}: {system.how}")


def print_targets(results: dict[str, Figures], floor: Floor | None) -> None:
    """Issue 32's targets: the durable enqueue p50 at most 0.8x the fastest persisting peer's
    and at most 0.1 ms above the memory store plus the disk's flush; the drain at least 4x
    the fastest peer's."""
    systems = [system for system in SYSTEMS if system.label in results]
    ours = [s.label for s in systems if s.server == "spoolgear"]
    peers = [s.label for s in systems if not s.server.startswith("spoolgear")]
    persisting = [s.label for s in systems if s.server in PERSISTING_PEERS]
    print("\ntargets (issue 32):")
    if ours and persisting:
        fastest = min(persisting, key=lambda label: results[label].p50_ms)
        bound = 0.8 * results[fastest].p50_ms
        for label in ours:
            p50 = results[label].p50_ms
            print(
                f"- enqueue p50, {label}: {p50:.3f} ms against 0.8 x {fastest} "
                f"({bound:.3f} ms): {'met' if p50 <= bound else 'NOT met'}"
            )
    if floor is not None:
        rounds = " / ".join(
            f"{d:.3f}-{m:.3f}-{f:.3f}"
            for d, m, f in zip(floor.durable, floor.memory, floor.flush, strict=True)
        )
        overhead = floor.overhead()
        print(
            f"- enqueue p50, @gearman_task, SQLite - memory store - fsync, {FLOOR_ROUNDS} rounds "
            f"in turn ({rounds} ms): {overhead:.3f} ms of the medians, target <= 0.1: "
            + ("met" if overhead <= 0.1 else "NOT met")
        )
    if ours and peers:
        fastest = max(peers, key=lambda label: results[label].drain_rate)
        best = max(ours, key=lambda label: results[label].drain_rate)
        ratio = results[best].drain_rate / results[fastest].drain_rate
        print(
            f"- drain, {best}: {results[best].drain_rate:,.0f}/s = {ratio:.2f}x {fastest} "
            f"({results[fastest].drain_rate:,.0f}/s), target >= 4x: "
            + ("met" if ratio >= 4 else "NOT met")
        )


def run(scale: float, only: set[str] | None, chart_path: Path) -> dict[str, Figures]:
    known = {name for s in SYSTEMS for name in (s.setting, s.server)} | {"floor"}
    if only is not None and only - known:
        raise SystemExit(
            f"--only: no system is called {', '.join(sorted(only - known))}; "
            f"choose among {', '.join(sorted(known))}"
        )
    chosen = [s for s in SYSTEMS if only is None or s.setting in only or s.server in only]
    results: dict[str, Figures] = {}
    failed: list[str] = []
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        cluster_context = run_postgres() if any(s.server == "postgresql" for s in chosen) else None
        with cluster_context if cluster_context is not None else nullcontext() as cluster:
            for system in chosen:
                name = f"{system.setting}_{system.server}"
                try:
                    with queue_server(system.server, scratch, cluster, name) as server:
                        results[system.label] = measure(system, server, scratch, scale)
                except (RuntimeError, subprocess.SubprocessError) as error:
                    failed.append(f"{system.label}: {error}")
                    print(f"{system.label} FAILED: {error}", flush=True)
                    continue
                print(f"{system.label}: {results[system.label]}", flush=True)
        floor = measure_floor(scratch) if only is None or "floor" in only else None
    print_table(results)
    print_targets(results, floor)
    chart.draw_systems(
        {label: (f.p50_ms, f.drain_rate) for label, f in results.items()},
        "Django projects: enqueue p50 (one process) and drain (two workers)",
        chart_path,
    )
    print(f"\nchart drawn in {chart_path}")
    if failed:
        raise SystemExit("these systems could not be measured:\n" + "\n".join(failed))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the task counts")
    parser.add_argument(
        "--only",
        help="comma-separated BENCH_SYSTEM or server names, and `floor` for the rounds "
        "that judge the enqueue target (default: all)",
    )
    parser.add_argument("--chart", type=Path, default=BENCH / "django_peers.png")
    args = parser.parse_args()
    run(args.scale, set(args.only.split(",")) if args.only else None, args.chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
