"""Side-by-side benchmark: gearmand 1.1.20 (-t 1) and spoolgear (memory store), one load generator;
then the same loads with metrics served and scraped; then the uWSGI spooler against
spoolgear's uwsgi door (``uwsgi_spooler.py``), then a Django
gearman_worker process against a pygearman worker (``django_worker.py``), then transient
against durable mule/farm messages (``mules.py``), then the PostgreSQL store against
gearmand's PostgreSQL queue and procrastinate (``postgresql.py``), Django's Tasks framework
on spoolgear against django-tasks-db (``tasks_framework.py``), then a Django project's view
of spoolgear against Celery, RQ, Dramatiq, Huey, procrastinate and django-tasks-db
(``django_peers.py``).

Usage: ``make bench`` or ``python bench/run.py [--scale 0.2]``. Prints a table with
both servers' figures and spoolgear/gearmand ratios. Timings vary run to run on a
shared 2-core machine: compare ratios from the same run, not absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chart
import django_peers
import django_worker
import loadgen
import mules
import postgresql
import tasks_framework
import uwsgi_spooler
from servers import cpu_seconds, gearmand, rss, spoolgear

Server = Callable[[], AbstractContextManager[tuple[int, int]]]


def measure(server: Server, scale: float) -> dict[str, float]:
    results: dict[str, float] = {}
    enqueue_jobs = int(200_000 * scale)
    drain_jobs = int(200_000 * scale)
    round_trip_jobs = int(40_000 * scale)
    single_jobs = int(10_000 * scale)
    memory_jobs = int(1_000_000 * scale)
    with server() as (port, pid):
        cpu = cpu_seconds(pid)
        results["enqueue/s"] = asyncio.run(loadgen.enqueue(port, enqueue_jobs))
        results["CPU us/bg job"] = (cpu_seconds(pid) - cpu) / enqueue_jobs * 1e6
    with server() as (port, _pid):
        asyncio.run(loadgen.enqueue(port, drain_jobs))
        results["drain/s (8 workers)"] = asyncio.run(loadgen.drain(port, drain_jobs))
    with server() as (port, pid):
        cpu = cpu_seconds(pid)
        trips = asyncio.run(loadgen.round_trips(port, round_trip_jobs))
        results["CPU us/fg job"] = (cpu_seconds(pid) - cpu) / round_trip_jobs * 1e6
        results["fg round trips/s (8x8)"] = trips.rate
        results["fg p50 ms"] = trips.p50_ms
        results["fg p99 ms"] = trips.p99_ms
    with server() as (port, _pid):
        single = asyncio.run(
            loadgen.round_trips(port, single_jobs, clients=1, inflight=1, workers=1)
        )
        results["fg round trips/s (1x1)"] = single.rate
        results["fg 1x1 p50 ms"] = single.p50_ms
    with server() as (port, pid):
        before = rss(pid)
        asyncio.run(loadgen.enqueue(port, memory_jobs))
        time.sleep(0.5)
        results["bytes/queued job"] = (rss(pid) - before) / memory_jobs
        results[f"RSS MiB, {memory_jobs} queued"] = rss(pid) / 2**20
    return results


LOWER_IS_BETTER = {
    "CPU us/bg job",
    "CPU us/fg job",
    "fg p50 ms",
    "fg p99 ms",
    "fg 1x1 p50 ms",
    "bytes/queued job",
}
TARGETS = {
    "enqueue/s": 1.0,
    "drain/s (8 workers)": 1.5,
    "fg round trips/s (8x8)": 1.0,
    "fg p99 ms": 1.0,
    "fg round trips/s (1x1)": 1.0,
    "CPU us/bg job": 1.0,
    "CPU us/fg job": 1.0,
    "bytes/queued job": 2.0,
}
"""Issue 20's targets as spoolgear's advantage over gearmand -t 1 (1.0 = as good)."""


def advantage(metric: str, theirs: float, ours: float) -> float:
    """Above 1.0 when spoolgear does better: a rate over gearmand's, or gearmand's time,
    latency, CPU or memory over spoolgear's."""
    if metric in LOWER_IS_BETTER:
        return theirs / ours
    return ours / theirs


def compare_with_gearmand(scale: float, runs: int) -> tuple[dict[str, float], chart.Ratios]:
    """gearmand -t 1, the compiled core and the pure-Python core, ``runs`` times in turn;
    every run printed, then the best ratio of each metric. Returns the compiled core's
    last figures and the best ratios of both cores."""
    best: chart.Ratios = {"compiled": {}, "pure Python": {}}
    ours: dict[str, float] = {}
    for run in range(1, runs + 1):
        theirs = measure(gearmand, scale)
        ours = measure(spoolgear, scale)
        pure = measure(functools.partial(spoolgear, pure=True), scale)
        print(f"\nrun {run} of {runs}")
        print(
            f"{'metric':<28}{'gearmand -t 1':>14}{'compiled':>12}{'ratio':>8}"
            f"{'pure Python':>13}{'ratio':>8}  target"
        )
        for metric, their_value in theirs.items():
            if metric.startswith("RSS"):
                print(
                    f"{metric:<28}{their_value:>14,.0f}{ours[metric]:>12,.0f}"
                    f"{'':>8}{pure[metric]:>13,.0f}"
                )
                continue
            row = f"{metric:<28}{their_value:>14,.1f}"
            for core, figures in (("compiled", ours), ("pure Python", pure)):
                ratio = advantage(metric, their_value, figures[metric])
                best[core][metric] = max(ratio, best[core].get(metric, 0.0))
                row += f"{figures[metric]:>{12 if core == 'compiled' else 13},.1f}{ratio:>7.2f}x"
            target = TARGETS.get(metric)
            print(row + (f"  >= {target}" if target else ""))
    print(f"\nbest of {runs} (ratio: spoolgear's advantage, above 1.0 = spoolgear better)")
    print(f"{'metric':<28}{'compiled':>10}{'pure Python':>13}  target")
    for metric, ratio in best["compiled"].items():
        target = TARGETS.get(metric)
        print(
            f"{metric:<28}{ratio:>9.2f}x{best['pure Python'][metric]:>12.2f}x"
            + (f"  >= {target}" if target else "")
        )
    return ours, best


def measure_metrics_cost(scale: float, without: dict[str, float]) -> None:
    """The same loads with --metrics-listen (job timing on) and a scrape every second."""
    enqueue_jobs, round_trip_jobs = int(200_000 * scale), int(40_000 * scale)
    metered = functools.partial(spoolgear, metrics=True)
    with metered() as (port, _pid):
        enqueue = asyncio.run(loadgen.enqueue(port, enqueue_jobs))
    with metered() as (port, _pid):
        asyncio.run(loadgen.enqueue(port, enqueue_jobs))
        drain = asyncio.run(loadgen.drain(port, enqueue_jobs))
    with metered() as (port, _pid):
        trips = asyncio.run(loadgen.round_trips(port, round_trip_jobs)).rate
    print("\nmetrics (--metrics-listen, scraped every second) against none, same run:")
    print(f"{'metric':<28}{'without':>16}{'with':>14}{'ratio':>9}")
    for metric, value in (
        ("enqueue/s", enqueue),
        ("drain/s (8 workers)", drain),
        ("fg round trips/s (8x8)", trips),
    ):
        ratio = value / without[metric]
        print(f"{metric:<28}{without[metric]:>16,.0f}{value:>14,.0f}{ratio:>8.2f}x")


def measure_results_cost(scale: float) -> None:
    """What keeping results costs: drains with ``--keep-results 0`` against the default,
    in memory and on SQLite, each pair back to back, and the memory a kept result takes
    (the difference in resident memory after the same drain, over the jobs)."""
    jobs = int(200_000 * scale)
    print(f"\nresults kept (--keep-results 1h, the default) against none, {jobs:,} jobs:")
    print(f"{'metric':<28}{'none':>16}{'kept':>14}{'ratio':>9}")
    with tempfile.TemporaryDirectory() as scratch:
        for store in ("memory:", "sqlite"):
            rates, resident = [], []
            for keep in ("0", "1h"):
                where = f"sqlite:{scratch}/keep-{keep}.db" if store == "sqlite" else store
                with spoolgear(where, "--keep-results", keep) as (port, pid):
                    asyncio.run(loadgen.enqueue(port, jobs))
                    rates.append(asyncio.run(loadgen.drain(port, jobs)))
                    time.sleep(0.5)
                    resident.append(rss(pid))
            name = f"drain/s, {store.rstrip(':')}"
            print(f"{name:<28}{rates[0]:>16,.0f}{rates[1]:>14,.0f}{rates[1] / rates[0]:>8.2f}x")
            per_result = (resident[1] - resident[0]) / jobs
            print(f"{'  bytes per kept result':<28}{'':>16}{per_result:>14,.0f}")


def measure_flow_cost(scale: float) -> None:
    """What flow control costs a grab: drains with no rule against rules on the drained
    function that never hold a job back (a rate and a running limit far above the drain),
    memory store, each pair back to back, twice."""
    jobs = int(200_000 * scale)
    name = loadgen.FUNCTION.decode()
    rules = ("--limit", f"{name}=10000000/s", "--max-running", f"{name}=100000")
    print(f"\nflow rules that never bind against none, memory store, {jobs:,} jobs:")
    print(f"{'metric':<28}{'no rule':>16}{'rules':>14}{'ratio':>9}")
    for run in (1, 2):
        rates = []
        for flags in ((), rules):
            with spoolgear("memory:", *flags) as (port, _pid):
                asyncio.run(loadgen.enqueue(port, jobs))
                rates.append(asyncio.run(loadgen.drain(port, jobs)))
        row = f"drain/s, run {run}"
        print(f"{row:<28}{rates[0]:>16,.0f}{rates[1]:>14,.0f}{rates[1] / rates[0]:>8.2f}x")


def measure_durability(scale: float, memory_rates: dict[str, float]) -> dict[str, float]:
    """Durable enqueue against gearmand -q libsqlite3, durable drain, restart time, and
    the memory of a broker holding ten million stored jobs; returns the ratios."""
    print("\ndurability (SQLite, fsync on every commit unless --sync normal):")
    restart_jobs, paged_jobs = int(1_000_000 * scale), int(10_000_000 * scale)
    with tempfile.TemporaryDirectory() as scratch:
        with gearmand("-q", "libsqlite3", f"--libsqlite3-db={scratch}/gearmand.db") as (port, _):
            theirs = asyncio.run(loadgen.enqueue(port, int(4_000 * max(scale, 0.25))))
        store = f"sqlite:{scratch}/spoolgear.db"
        with spoolgear(store) as (port, _):
            ours = asyncio.run(loadgen.enqueue(port, int(200_000 * scale)))
        with spoolgear(f"sqlite:{scratch}/normal.db", "--sync", "normal") as (port, _):
            normal = asyncio.run(loadgen.enqueue(port, int(200_000 * scale)))
        with spoolgear(store) as (port, _):
            drained = asyncio.run(loadgen.drain(port, int(200_000 * scale)))
        with spoolgear(store) as (port, _):
            asyncio.run(loadgen.enqueue(port, restart_jobs))
        started = time.perf_counter()
        with spoolgear(store) as (port, pid):
            restart = time.perf_counter() - started
            asyncio.run(loadgen.enqueue(port, paged_jobs - restart_jobs))
            paged_rss, paged_peak = rss(pid), rss(pid, "VmHWM")
        started = time.perf_counter()
        with spoolgear(store) as (port, pid):
            paged_restart = time.perf_counter() - started
            restarted_rss = rss(pid)
    rows = [
        (
            "durable enqueue/s",
            f"gearmand -q libsqlite3 {theirs:,.0f}",
            ours,
            ours / theirs,
            ">= 100",
        ),
        (
            "  --sync normal",
            f"gearmand -q libsqlite3 {theirs:,.0f}",
            normal,
            normal / theirs,
            "",
        ),
        (
            "  vs spoolgear memory",
            f"memory {memory_rates['enqueue/s']:,.0f}",
            ours,
            ours / memory_rates["enqueue/s"],
            ">= 0.25",
        ),
        (
            "durable drain/s (8 workers)",
            f"memory {memory_rates['drain/s (8 workers)']:,.0f}",
            drained,
            drained / memory_rates["drain/s (8 workers)"],
            ">= 0.80",
        ),
    ]
    for metric, baseline, value, ratio, target in rows:
        print(f"{metric:<28}{baseline:>34}{value:>12,.0f}{ratio:>9.2f}x  {target}")
    print(
        f"{'restart, ' + format(restart_jobs, ',') + ' stored jobs':<28}"
        f"{'':>34}{restart:>11.2f}s  target < 10 s"
    )
    print(
        f"{format(paged_jobs, ',') + ' stored jobs queued:':<28}"
        f"{'':>34}{paged_rss / 2**20:>8,.0f} MiB  target < 1024 MiB"
        f" (peak {paged_peak / 2**20:,.0f} MiB)"
    )
    print(
        f"{'  restart with them':<28}{'':>34}{paged_restart:>11.2f}s"
        f"  (then {restarted_rss / 2**20:,.0f} MiB)"
    )
    return {
        "durable enqueue vs gearmand -q libsqlite3": ours / theirs,
        "durable drain vs memory drain": drained / memory_rates["drain/s (8 workers)"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply every job count (default 1.0 = 1M queued for RSS)",
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="runs of the gearmand comparison (best reported)"
    )
    parser.add_argument(
        "--chart",
        type=Path,
        default=Path(__file__).with_name("ratios.png"),
        help="where to draw the ratios (default bench/ratios.png)",
    )
    args = parser.parse_args()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    print(f"load generator: one process, uvloop; machine: {os.cpu_count()} cores")
    ours, best = compare_with_gearmand(args.scale, args.runs)
    measure_metrics_cost(args.scale, ours)
    measure_results_cost(args.scale)
    measure_flow_cost(args.scale)
    durability = measure_durability(args.scale, ours)
    chart.draw(
        {"compiled": {**best["compiled"], **durability}, "pure Python": best["pure Python"]},
        {
            **TARGETS,
            "durable enqueue vs gearmand -q libsqlite3": 100.0,
            "durable drain vs memory drain": 0.8,
        },
        f"spoolgear against gearmand 1.1.20 -t 1, best of {args.runs} (scale {args.scale})",
        args.chart,
    )
    print(f"\nratios drawn in {args.chart}")
    uwsgi_spooler.run(args.scale)
    django_worker.run(int(20_000 * args.scale), rounds=2)
    mules.main(["--messages", str(int(5_000 * args.scale))])
    postgresql.run(args.scale)
    tasks_framework.run(int(5_000 * args.scale))
    django_peers.run(args.scale, None, django_peers.BENCH / "django_peers.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
