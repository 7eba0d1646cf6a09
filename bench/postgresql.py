"""The PostgreSQL store side by side with its peers, on one throwaway PostgreSQL server:
durable enqueue against gearmand's own PostgreSQL queue (``gearmand -q Postgres``, which
keys its rows by unique, so every job of both has one),
enqueue and drain against procrastinate doing the same trivial task, and with three
brokers sharing the store, the time from one broker's death (kill -9) to the start of
the last of its jobs on the others.

Usage: ``python bench/postgresql.py [--scale 0.2]`` (``bench/run.py`` runs it too).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import procrastinate
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import loadgen
from servers import gearmand, spoolgear

from broker.store.pg_schema import migrate
from broker.store.postgresql import copy_job_rows
from broker.worker import Worker, WorkerJob
from tests.postgres import Cluster, fresh_database, postgres_binaries, run_postgres

LEASE = 2.0
"""The takeover scenario's ``--store-lease`` (the target is lease + 2 s)."""
FLOOR_BATCH = 2_000
"""Rows per transaction of the floor, about what a broker's group commit carries under
this load."""


def gearmand_libpq_enqueue(cluster: Cluster, jobs: int) -> float:
    database = fresh_database(cluster.url, "bench_gearmand")
    name = database.rsplit("/", 1)[1]
    conninfo = f"host=127.0.0.1 port={cluster.port} user=spoolgear dbname={name}"
    with gearmand("-q", "Postgres", f"--libpq-conninfo={conninfo}") as (port, _):
        return asyncio.run(loadgen.enqueue(port, jobs, uniques=True))


def spoolgear_rates(cluster: Cluster, jobs: int) -> tuple[float, float]:
    store = fresh_database(cluster.url, "bench_spoolgear")
    with spoolgear(store) as (port, _):
        enqueued = asyncio.run(loadgen.enqueue(port, jobs, uniques=True))
        drained = asyncio.run(loadgen.drain(port, jobs))
    return enqueued, drained


def postgresql_floor(cluster: Cluster, jobs: int) -> float:
    """Rows per second PostgreSQL itself takes into spoolgear's job table, with no broker:
    the store's own binary COPY from one process, ``FLOOR_BATCH`` rows a transaction.
    What any broker keeping a row per job in this schema could reach at best."""
    with psycopg.connect(fresh_database(cluster.url, "bench_floor"), autocommit=True) as db:
        migrate(db)
        rows = [
            (n, loadgen.FUNCTION, b"%d" % n, loadgen.PAYLOAD, 1, 0.0, b"", 0, False, n, b"", b"", 1)
            for n in range(jobs)
        ]
        started = time.perf_counter()
        with db.cursor() as cursor:
            for first in range(0, jobs, FLOOR_BATCH):
                with db.transaction():
                    copy_job_rows(cursor, "spoolgear_jobs", rows[first : first + FLOOR_BATCH])
        return jobs / (time.perf_counter() - started)


def procrastinate_rates(cluster: Cluster, jobs: int) -> tuple[float, float, float]:
    """Enqueue one job per call as an application does (``defer_async``, 8 calls at a
    time: each job its own acknowledged INSERT, as each of spoolgear's), its fastest
    enqueue (``batch_defer_async``, 1,000 a call), and a worker with concurrency 8
    running the same trivial task until the queue is empty."""
    database = fresh_database(cluster.url, "bench_procrastinate")
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=database))

    @app.task(name="bench")
    async def bench(n: int) -> None:
        del n

    async def measure() -> tuple[float, float, float]:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            started = time.perf_counter()
            for first in range(0, jobs, 8):
                await asyncio.gather(
                    *(bench.defer_async(n=n) for n in range(first, min(first + 8, jobs)))
                )
            one_by_one = jobs / (time.perf_counter() - started)
            started = time.perf_counter()
            for first in range(0, jobs, 1000):
                chunk: list[procrastinate.types.JSONDict] = [
                    {"n": n} for n in range(first, min(first + 1000, jobs))
                ]
                await bench.batch_defer_async(*chunk)
            batched = jobs / (time.perf_counter() - started)
            started = time.perf_counter()
            await app.run_worker_async(concurrency=8, wait=False)
            drained = 2 * jobs / (time.perf_counter() - started)
        return one_by_one, batched, drained

    return asyncio.run(measure())


def takeover_seconds(cluster: Cluster, jobs: int) -> float:
    """Three brokers; ``jobs`` queued on the first, whose workers connect to the other two
    only; kill -9 the first and time until the last of its jobs has started elsewhere."""
    store = fresh_database(cluster.url, "bench_takeover")
    lease = ("--store-lease", f"{LEASE:g}")
    started: list[float] = []
    lock = threading.Lock()

    def record(job: WorkerJob) -> bytes:
        with lock:
            started.append(time.monotonic())
        return b""

    with ExitStack() as stack:
        (victim, pid), *others = [stack.enter_context(spoolgear(store, *lease)) for _ in range(3)]
        asyncio.run(loadgen.enqueue(victim, jobs))
        workers = [Worker([f"127.0.0.1:{port}" for port, _ in others]) for _ in range(4)]
        threads = []
        for worker in workers:
            worker.register(loadgen.FUNCTION.decode(), record)
            threads.append(threading.Thread(target=worker.work))
            threads[-1].start()
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        while len(started) < jobs:
            time.sleep(0.01)
        for worker in workers:
            worker.stop()
        for thread in threads:
            thread.join()
    return max(started) - killed_at


def run(scale: float) -> None:
    if postgres_binaries() is None:
        raise SystemExit("PostgreSQL is not installed: run `make peers` (as root) first")
    jobs = int(100_000 * scale)
    with run_postgres() as cluster:
        theirs_gearmand = gearmand_libpq_enqueue(cluster, int(2_000 * max(scale, 0.25)))
        ours_enqueue, ours_drain = spoolgear_rates(cluster, jobs)
        floor = postgresql_floor(cluster, jobs)
        theirs_single, theirs_batched, theirs_drain = procrastinate_rates(cluster, jobs)
        takeover = takeover_seconds(cluster, int(5_000 * scale))
    print("\nPostgreSQL store (one local PostgreSQL 15 server for all, fsync on):")
    print(f"{'metric':<32}{'peer':>36}{'spoolgear':>12}{'ratio':>9}  target")
    rows = [
        ("durable enqueue/s", "gearmand -q Postgres", theirs_gearmand, ours_enqueue, ">= 50"),
        ("durable enqueue/s", "procrastinate defer x8", theirs_single, ours_enqueue, ">= 5"),
        ("durable enqueue/s", "procrastinate batch_defer", theirs_batched, ours_enqueue, ">= 5"),
        ("durable drain/s (8 workers)", "procrastinate concurrency 8", theirs_drain, ours_drain,
         ">= 5"),
    ]  # fmt: skip
    for metric, peer, theirs, ours, target in rows:
        peer_text = f"{peer} {theirs:,.0f}"
        print(f"{metric:<32}{peer_text:>36}{ours:>12,.0f}{ours / theirs:>8.1f}x  {target}")
    floor_text = f"COPY, {FLOOR_BATCH:,} rows a commit"
    print(
        f"{'floor: PostgreSQL alone':<32}{floor_text:>36}"
        f"{floor:>12,.0f}{floor / theirs_gearmand:>8.1f}x  (vs gearmand -q Postgres: the most"
        " any broker could reach)"
    )
    print(
        f"{'death to last job started':<32}{'lease ' + format(LEASE, 'g') + ' s':>36}"
        f"{takeover:>11.2f}s  target <= lease + 2 s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every job count")
    run(parser.parse_args().scale)
    return 0


if __name__ == "__main__":
    sys.exit(main())
