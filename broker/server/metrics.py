"""``--metrics-listen``: Prometheus metrics at ``/metrics``, health at ``/healthz`` and
``/readyz``, on a small HTTP server in its own thread.

prometheus_client renders the text format. The numbers are read on the event loop:
each scrape asks the loop for a snapshot and waits for it, so the broker's state is
never read while the loop changes it, and counting on the hot path stays plain
integer additions in the core. Function names are client input: the first
``--metrics-max-functions`` names seen get their own ``function`` label, the rest are
added up under ``function="_other"``, so a client inventing names cannot grow the
series without bound.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from broker.core.histogram import Histogram
from broker.core.model import Function
from broker.protocol.priorities import Priority
from broker.store.operations import FlowRule

# How long a scrape or a health check waits for the event loop to answer.
LOOP_ANSWER_SECONDS = 2.0
OTHER_FUNCTIONS = "_other"
PRIORITY_LABELS = {Priority.HIGH: "high", Priority.NORMAL: "normal", Priority.LOW: "low"}


@dataclass
class FunctionFigures:
    name: str
    queued: dict[str, int]
    """By priority label."""
    delayed: int
    """Epoch jobs not yet due."""
    running: int
    workers: int
    submitted: int
    outcomes: dict[str, int]
    """Jobs ended, by outcome: success, failure, cancelled."""
    retried: int
    wait_time: Histogram
    run_time: Histogram


@dataclass
class Snapshot:
    """What one scrape reports, copied on the event loop."""

    functions: list[FunctionFigures] = field(default_factory=list)
    failed_jobs: int = 0
    kept_results: int = 0
    flow_rules: list[FlowRule] = field(default_factory=list)
    kept_result_bytes: int = 0
    queued_payload_bytes: int = 0
    schedule_firings: int = 0
    commits: int = 0
    taken_over: int = 0
    batch_operations: Histogram | None = None
    commit_seconds: Histogram | None = None
    sync_seconds: Histogram | None = None
    connections: dict[str, int] = field(default_factory=dict)
    bytes_in: int = 0
    bytes_out: int = 0
    ready: str = ""
    """Empty when ready; else why not."""


def function_figures(function: Function) -> FunctionFigures:
    """A core ``Function``'s figures (read on the loop)."""
    return FunctionFigures(
        name=function.name.decode("utf-8", "replace"),
        queued={label: function.waiting(priority) for priority, label in PRIORITY_LABELS.items()},
        delayed=function.delayed,
        running=function.running,
        workers=len(function.workers),
        submitted=function.submitted,
        outcomes={
            "success": function.completed,
            "failure": function.failed,
            "cancelled": function.cancelled,
        },
        retried=function.retried,
        wait_time=function.wait_time.copy(),
        run_time=function.run_time.copy(),
    )


class FunctionLabels:
    """The ``function`` label of each name: its own for the first ``limit`` names seen
    (kept for the broker's life, so a series never changes its meaning), ``_other`` after."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.labelled: set[str] = set()

    def __call__(self, name: str) -> str:
        if name in self.labelled:
            return name
        if len(self.labelled) < self.limit:
            self.labelled.add(name)
            return name
        return OTHER_FUNCTIONS


def folded(functions: Iterable[FunctionFigures], label: FunctionLabels) -> list[FunctionFigures]:
    """One entry per label: the names past the limit added up under ``_other``."""
    by_label: dict[str, FunctionFigures] = {}
    for figures in functions:
        name = label(figures.name)
        total = by_label.get(name)
        if total is None:
            figures.name = name
            by_label[name] = figures
            continue
        for key, count in figures.queued.items():
            total.queued[key] += count
        for key, count in figures.outcomes.items():
            total.outcomes[key] += count
        total.delayed += figures.delayed
        total.running += figures.running
        total.workers += figures.workers
        total.submitted += figures.submitted
        total.retried += figures.retried
        total.wait_time.add(figures.wait_time)
        total.run_time.add(figures.run_time)
    return sorted(by_label.values(), key=lambda figures: figures.name)


def _histogram(
    name: str, text: str, rows: Iterable[tuple[list[str], Histogram]], labels: list[str]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, text, labels=labels)
    for values, histogram in rows:
        family.add_metric(values, histogram.cumulative(), sum_value=histogram.total)
    return family


def _flow_rules(rules: list[FlowRule]) -> Iterator[Metric]:
    """One series per rule, labelled by its pattern (rules are set by operators: few)."""
    paused = GaugeMetricFamily(
        "spoolgear_flow_paused",
        "1 while the functions a pattern names are paused.",
        labels=["pattern"],
    )
    rate = GaugeMetricFamily(
        "spoolgear_flow_rate_limit",
        "Job starts a second a rate limit allows (--limit, spoolgear limit).",
        labels=["pattern"],
    )
    running = GaugeMetricFamily(
        "spoolgear_flow_max_running",
        "Jobs a running limit lets run at once (--max-running, spoolgear limit).",
        labels=["pattern"],
    )
    per_key = GaugeMetricFamily(
        "spoolgear_flow_max_running_per_key",
        "Jobs with one concurrency key a per-key limit lets run at once.",
        labels=["pattern"],
    )
    for rule in rules:
        label = [rule.pattern.decode("utf-8", "replace")]
        paused.add_metric(label, int(rule.paused))
        if rule.rate:
            rate.add_metric(label, rule.rate / rule.per)
        if rule.running:
            running.add_metric(label, rule.running)
        if rule.per_key:
            per_key.add_metric(label, rule.per_key)
    yield from (paused, rate, running, per_key)


class BrokerCollector(Collector):
    """Renders a snapshot per scrape; ``snapshot()`` is called on the HTTP thread."""

    def __init__(self, snapshot: Callable[[], Snapshot], max_functions: int) -> None:
        self.snapshot = snapshot
        self.labels = FunctionLabels(max_functions)

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        functions = folded(snap.functions, self.labels)
        queued = GaugeMetricFamily(
            "spoolgear_jobs_queued",
            "Jobs waiting for a worker (in memory or in the store), by function and priority.",
            labels=["function", "priority"],
        )
        delayed = GaugeMetricFamily(
            "spoolgear_jobs_delayed",
            "Jobs submitted to run later (SUBMIT_JOB_EPOCH, a spool request's at) and not yet "
            "due, by function.",
            labels=["function"],
        )
        running = GaugeMetricFamily(
            "spoolgear_jobs_running", "Jobs a worker holds, by function.", labels=["function"]
        )
        workers = GaugeMetricFamily(
            "spoolgear_workers", "Worker connections serving the function.", labels=["function"]
        )
        submitted = CounterMetricFamily(
            "spoolgear_jobs_submitted", "Jobs created, by function.", labels=["function"]
        )
        completed = CounterMetricFamily(
            "spoolgear_jobs_completed",
            "Jobs ended, by function and outcome (success, failure, cancelled).",
            labels=["function", "outcome"],
        )
        retried = CounterMetricFamily(
            "spoolgear_jobs_retried",
            "Jobs put back in their queue after a failed attempt, by function.",
            labels=["function"],
        )
        for figures in functions:
            name = figures.name
            for priority, count in figures.queued.items():
                queued.add_metric([name, priority], count)
            delayed.add_metric([name], figures.delayed)
            running.add_metric([name], figures.running)
            workers.add_metric([name], figures.workers)
            submitted.add_metric([name], figures.submitted)
            for outcome, count in figures.outcomes.items():
                completed.add_metric([name, outcome], count)
            retried.add_metric([name], figures.retried)
        yield from (queued, delayed, running, workers, submitted, completed, retried)
        yield _histogram(
            "spoolgear_job_wait_seconds",
            "From runnable (submitted, due, or put back) to started, by function.",
            (([f.name], f.wait_time) for f in functions),
            ["function"],
        )
        yield _histogram(
            "spoolgear_job_run_seconds",
            "From started to WORK_COMPLETE, WORK_FAIL or WORK_EXCEPTION, by function.",
            (([f.name], f.run_time) for f in functions),
            ["function"],
        )
        yield GaugeMetricFamily(
            "spoolgear_failed_jobs", "Jobs in the failed list.", value=snap.failed_jobs
        )
        yield from _flow_rules(snap.flow_rules)
        yield GaugeMetricFamily(
            "spoolgear_kept_results",
            "Results of ended background jobs this broker keeps in memory (--keep-results).",
            value=snap.kept_results,
        )
        yield GaugeMetricFamily(
            "spoolgear_kept_result_bytes",
            "Bytes of values and payloads the kept results hold (--max-kept-result-bytes).",
            value=snap.kept_result_bytes,
        )
        yield GaugeMetricFamily(
            "spoolgear_queued_payload_bytes",
            "Payload bytes of queued jobs held in memory, all functions (--max-queued-bytes).",
            value=snap.queued_payload_bytes,
        )
        yield CounterMetricFamily(
            "spoolgear_schedule_firings", "Runs started by schedules.", value=snap.schedule_firings
        )
        yield CounterMetricFamily(
            "spoolgear_store_commits", "Store transactions written.", value=snap.commits
        )
        yield CounterMetricFamily(
            "spoolgear_jobs_taken_over",
            "Jobs taken over from brokers of a shared store that stopped.",
            value=snap.taken_over,
        )
        if snap.batch_operations and snap.commit_seconds and snap.sync_seconds:
            yield _histogram(
                "spoolgear_store_batch_operations",
                "Operations per store transaction.",
                [([], snap.batch_operations)],
                [],
            )
            yield _histogram(
                "spoolgear_store_commit_seconds",
                "Time to write one store transaction, fsync included.",
                [([], snap.commit_seconds)],
                [],
            )
            yield _histogram(
                "spoolgear_store_sync_seconds",
                "Time one store transaction spent on fsync (SQLite's COMMIT).",
                [([], snap.sync_seconds)],
                [],
            )
        connections = GaugeMetricFamily(
            "spoolgear_connections", "Open connections, by door.", labels=["door"]
        )
        for door, count in snap.connections.items():
            connections.add_metric([door], count)
        yield connections
        transferred = CounterMetricFamily(
            "spoolgear_transferred_bytes",
            "Bytes read from and written to peers, on every door.",
            labels=["direction"],
        )
        transferred.add_metric(["in"], snap.bytes_in)
        transferred.add_metric(["out"], snap.bytes_out)
        yield transferred


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every few seconds is not news


def on_loop(
    loop: asyncio.AbstractEventLoop, read: Callable[[], Snapshot]
) -> Callable[[], Snapshot]:
    """``read``, run on ``loop`` from another thread; TimeoutError if the loop is stuck."""

    def ask() -> Snapshot:
        answer: concurrent.futures.Future[Snapshot] = concurrent.futures.Future()

        def run() -> None:
            try:
                answer.set_result(read())
            except BaseException as exc:  # handed to the asking thread
                answer.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return answer.result(timeout=LOOP_ANSWER_SECONDS)

    return ask


class MetricsServer:
    """The HTTP endpoints, serving from a daemon thread until ``close()``."""

    def __init__(
        self, host: str, port: int, snapshot: Callable[[], Snapshot], max_functions: int
    ) -> None:
        self.snapshot = snapshot
        registry = CollectorRegistry(auto_describe=False)
        registry.register(BrokerCollector(snapshot, max_functions))
        self.metrics = make_wsgi_app(registry)
        self.httpd = make_server(host, port, self._route, _ThreadingServer, _QuietHandler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="spoolgear-metrics", daemon=True
        )
        self.thread.start()

    @property
    def address(self) -> str:
        host, port = self.httpd.socket.getsockname()[:2]
        return f"{host}:{port}"

    def _route(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self.metrics(environ, start_response)  # type: ignore[no-any-return]
        if path not in ("/healthz", "/readyz"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not here: /metrics, /healthz, /readyz\n"]
        try:
            snap = self.snapshot()
        except TimeoutError:
            problem = f"the event loop did not answer within {LOOP_ANSWER_SECONDS} s"
        else:
            problem = snap.ready if path == "/readyz" else ""
        status = "503 Service Unavailable" if problem else "200 OK"
        start_response(status, [("Content-Type", "text/plain")])
        return [(problem or "ok").encode() + b"\n"]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
