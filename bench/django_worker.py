"""Drain rate of one ``manage.py gearman_worker`` process against one pygearman worker.

Both serve the same trivial task (``django_site/benchapp``: return the
argument) from a fresh ``spoolgear serve --store memory:``; each is started,
seen registered, then sent N background jobs in one pipelined batch, and
timed until the broker's queue is empty. Rounds alternate the workers. A bare
round-trip worker (``round_trip_worker.py``) runs beside them as the floor: the
most any worker holding one job at a time could drain here.

Usage: ``python bench/django_worker.py [--jobs 20000] [--rounds 2]`` (``make bench`` runs it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from broker.admin import AdminClient  # noqa: E402
from broker.banner import read_banner  # noqa: E402
from broker.client import Client, JobRequest  # noqa: E402

TASK_NAME = "benchapp.trivial.noop"
DJANGO_WORKER = [
    sys.executable,
    str(BENCH / "django_site" / "manage.py"),
    "gearman_worker",
    "-a",
    "benchapp",
    "-n",
    "trivial",
]
PYGEARMAN = "pygearman 0.2.6"
FLOOR = "floor: a bare round trip per job"
WORKERS = {
    "gearman_worker (default, --prefetch 1)": DJANGO_WORKER,
    "gearman_worker --prefetch 4": [*DJANGO_WORKER, "--prefetch", "4"],
    PYGEARMAN: [sys.executable, str(BENCH / "pygearman_worker.py")],
    FLOOR: [sys.executable, str(BENCH / "round_trip_worker.py")],
}
TAKE_THE_ADDRESS = (WORKERS[PYGEARMAN], WORKERS[FLOOR])
"""Commands given the broker's address as their argument (the Django worker reads
``GEARMAN_SERVER``)."""


@contextmanager
def broker() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "broker.cli", "serve", "--port", "0", "--store", "memory:"],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    address = read_banner(process.stdout.readline()).gearman
    try:
        yield address
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_registered(address: str) -> None:
    deadline = time.monotonic() + 30
    with AdminClient(address) as admin:
        while not any(TASK_NAME in worker.functions for worker in admin.workers()):
            if time.monotonic() > deadline:
                raise RuntimeError("the worker never registered")
            time.sleep(0.02)


def queued(admin: AdminClient) -> int:
    return sum(status.total for status in admin.status() if status.name == TASK_NAME)


def drain_rate(command: list[str], jobs: int) -> float:
    """Jobs per second one worker process finishes, from the batch's submission to empty."""
    with broker() as address:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "GEARMAN_SERVER": address}
        worker = subprocess.Popen(
            [*command, address] if command in TAKE_THE_ADDRESS else command,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_registered(address)
            requests = [
                JobRequest(TASK_NAME, b'{"args":[%d],"kwargs":{}}' % n, background=True)
                for n in range(jobs)
            ]
            with Client([address]) as client, AdminClient(address) as admin:
                started = time.perf_counter()
                client.submit_many(requests)
                while queued(admin):
                    time.sleep(0.005)
                return jobs / (time.perf_counter() - started)
        finally:
            worker.kill()
            worker.wait()


def run(jobs: int, rounds: int) -> None:
    """Measure every worker ``rounds`` times and print a Markdown table."""
    rates: dict[str, list[float]] = {name: [] for name in WORKERS}
    for _ in range(rounds):
        for name, command in WORKERS.items():
            rates[name].append(drain_rate(command, jobs))
    theirs = max(rates[PYGEARMAN])
    print(f"\n## one worker process draining {jobs:,} trivial jobs (best of {rounds})")
    print("| worker | jobs/s per round | best | vs pygearman (target >= 3x) |")
    print("| --- | --- | --- | --- |")
    for name, values in rates.items():
        print(
            f"| {name} | {' / '.join(f'{v:,.0f}' for v in values)} | {max(values):,.0f} "
            f"| {max(values) / theirs:.2f}x |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    options = parser.parse_args()
    run(options.jobs, options.rounds)
