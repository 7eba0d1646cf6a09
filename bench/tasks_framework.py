"""Django's Tasks framework from a Django project's point of view: spoolgear's backend
against django-tasks-db's, on SQLite and on PostgreSQL.

Enqueueing processes (one, then eight, as web workers would) call ``task.enqueue()`` one
task at a time, as views do, N tasks in all; then one worker process drains them, timed from
its start to the last task done: spoolgear's
``manage.py gearman_worker --tasks-queue default`` (the broker's ``--store`` on the same
kind of database, a SQLite file or a database of the same PostgreSQL server), and
django-tasks-db's ``manage.py db_worker --batch`` (the project's database). The project is
``bench/tasks_site`` with one task that returns its argument.

Usage: ``python bench/tasks_framework.py [--tasks 2000]`` (``bench/run.py`` runs it too).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SITE = BENCH / "tasks_site"
sys.path[:0] = [str(ROOT)]

import projects  # noqa: E402  (bench/, the script's directory)
from servers import spoolgear  # noqa: E402

from broker.admin import AdminClient  # noqa: E402
from tests.postgres import fresh_database, postgres_binaries, run_postgres  # noqa: E402

ENQUEUE = (
    "import time; from benchtasks.tasks import echo; started = time.time(); "
    "[echo.enqueue(n) for n in range({tasks})]; print(started, time.time())"
)
ENQUEUERS = (1, 8)


def manage(environment: dict[str, str], *args: str) -> str:
    return projects.manage(sys.executable, SITE, environment, *args)


def enqueue_rate(environment: dict[str, str], tasks: int, processes: int) -> float:
    """Tasks a second from ``processes`` enqueuing at once, from the first one's start to
    the last one's end (Django's start-up in each is not counted)."""
    command = [sys.executable, "manage.py", "shell", "-c", ENQUEUE.format(tasks=tasks // processes)]
    running = [
        subprocess.Popen(command, cwd=SITE, env=environment, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    spans = []
    for process in running:
        output, _ = process.communicate(timeout=1200)
        if process.returncode != 0:
            raise RuntimeError(f"enqueueing failed: {output}")
        spans.append([float(value) for value in output.split()[-2:]])
    return (
        tasks // processes * processes / (max(end for _, end in spans) - min(s for s, _ in spans))
    )


def spoolgear_rates(store: str, database: str, tasks: int) -> tuple[list[float], float]:
    with spoolgear(store) as (port, _pid):
        address = f"127.0.0.1:{port}"
        environment = {
            **os.environ,
            "BENCH_BACKEND": "spoolgear",
            "BENCH_DATABASE": database,
            "GEARMAN_SERVER": address,
        }
        enqueued = [enqueue_rate(environment, tasks, processes) for processes in ENQUEUERS]
        started = time.perf_counter()
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "gearman_worker", "--tasks-queue", "default"],
            cwd=SITE,
            env=environment,
            stderr=subprocess.DEVNULL,
        )
        try:
            with AdminClient(address) as admin:
                while any(s.total for s in admin.status() if s.name == "django.tasks.default"):
                    time.sleep(0.01)
            drained = tasks * len(ENQUEUERS) / (time.perf_counter() - started)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    return enqueued, drained


def database_rates(database: str, tasks: int) -> tuple[list[float], float]:
    environment = {**os.environ, "BENCH_BACKEND": "django-tasks-db", "BENCH_DATABASE": database}
    manage(environment, "migrate", "--verbosity", "0")
    enqueued = [enqueue_rate(environment, tasks, processes) for processes in ENQUEUERS]
    started = time.perf_counter()
    manage(environment, "db_worker", "--batch", "--no-startup-delay", "--queue-name", "default")
    return enqueued, tasks * len(ENQUEUERS) / (time.perf_counter() - started)


def run(tasks: int) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        rows.append(
            (
                "SQLite",
                spoolgear_rates(f"sqlite:{scratch}/broker.db", f"{scratch}/sg.sqlite3", tasks),
                database_rates(f"{scratch}/db.sqlite3", tasks),
            )
        )
    if postgres_binaries() is not None:
        with run_postgres() as cluster:
            rows.append(
                (
                    "PostgreSQL",
                    spoolgear_rates(
                        fresh_database(cluster.url, "bench_broker"),
                        fresh_database(cluster.url, "bench_project"),
                        tasks,
                    ),
                    database_rates(fresh_database(cluster.url, "bench_tasks_db"), tasks),
                )
            )
    print(f"\nDjango's Tasks framework, {tasks:,} tasks per enqueue run, one worker draining all:")
    print(f"{'database':<12}{'metric':<26}{'django-tasks-db':>17}{'spoolgear':>12}{'ratio':>9}")
    for database, (ours_in, ours_out), (theirs_in, theirs_out) in rows:
        figures = [
            (f"enqueue/s, {count} process{'es' if count > 1 else ''}", ours, theirs)
            for count, ours, theirs in zip(ENQUEUERS, ours_in, theirs_in, strict=True)
        ]
        for metric, ours, theirs in [*figures, ("drain/s, 1 worker", ours_out, theirs_out)]:
            print(f"{database:<12}{metric:<26}{theirs:>17,.0f}{ours:>12,.0f}{ours / theirs:>8.1f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=2000, help="tasks per run (default 2000)")
    run(parser.parse_args().tasks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
