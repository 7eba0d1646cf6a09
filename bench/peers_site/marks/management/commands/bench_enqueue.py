"""``manage.py bench_enqueue --calls N`` times N enqueue calls one after another, as N web
requests would make them; ``--idle K`` then enqueues K tasks one at a time, waiting for each
to start (the workers idle in between), for the enqueue-to-start latency. Prints JSON."""

import json
import os
import random
import statistics
import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from marks.enqueue import Enqueue, enqueuer
from marks.record import RECORD

WARM_UP = 20
"""Calls made before timing: the first one connects."""


class Command(BaseCommand):
    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--calls", type=int, default=0)
        parser.add_argument("--idle", type=int, default=0)

    def handle(self, *args: Any, calls: int, idle: int, **options: Any) -> None:
        enqueue = enqueuer()
        report: dict[str, Any] = {}
        if calls:
            report.update(timed_calls(enqueue, calls))
        if idle:
            report["start_ms"] = [start_latency(enqueue) * 1000 for _ in range(idle)]
        self.stdout.write(json.dumps(report))


def timed_calls(enqueue: Enqueue, calls: int) -> dict[str, float]:
    """Each call's own time (``calls`` of them, after the warm-up ones, which also run)."""
    for _ in range(WARM_UP):
        enqueue(time.time())
    spans = []
    started = time.perf_counter()
    for _ in range(calls):
        before = time.perf_counter()
        enqueue(time.time())
        spans.append(time.perf_counter() - before)
    elapsed = time.perf_counter() - started
    percentiles = statistics.quantiles(spans, n=100)
    return {
        "calls": calls + WARM_UP,
        "rate": calls / elapsed,
        "p50_ms": percentiles[49] * 1000,
        "p99_ms": percentiles[98] * 1000,
    }


def start_latency(enqueue: Enqueue) -> float:
    """From just before the call to the task's start, at idle: the marks file grows by
    one record when it starts."""
    marks = os.environ["BENCH_MARKS"]
    size = os.path.getsize(marks) if os.path.exists(marks) else 0
    time.sleep(random.uniform(0.2, 0.4))  # idle between tasks, not in step with any poll
    enqueue(time.time())
    deadline = time.monotonic() + 60
    while not os.path.exists(marks) or os.path.getsize(marks) < size + RECORD.size:
        if time.monotonic() > deadline:
            raise RuntimeError("the task did not start within 60 s")
        time.sleep(0.0005)
    with open(marks, "rb") as file:
        file.seek(size)
        started, stamp = RECORD.unpack(file.read(RECORD.size))
    return float(started - stamp)
