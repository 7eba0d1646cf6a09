"""``--metrics-listen``: Prometheus metrics and health checks of a real broker, read with
prometheus_client's own parser and compared with what the admin protocol says."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.admin import AdminClient
from broker.client import Client
from broker.worker import Worker, WorkerJob
from tests.helpers import run_broker
from tests.metrics import get, metrics_address, scrape, value


def _fail(job: WorkerJob) -> bytes:
    raise RuntimeError("no such user")


def test_job_counts_and_times_match_what_happened() -> None:
    with run_broker("--metrics-listen", "0", "--store", "memory:") as broker:
        address = metrics_address(broker.listening)
        with Client([broker.address]) as client:
            for n in range(3):
                client.submit_background("mail", b"%d" % n)
            client.submit_background("welcome", b"x")
            client.submit_background("report", b"later")  # nobody serves it
        with Worker([broker.address]) as worker:
            worker.register("mail", lambda job: b"sent")
            worker.register("welcome", _fail)
            worker.work(burst=True)
        samples = scrape(address)
        with AdminClient(broker.address) as admin:
            status = {s.name: s for s in admin.status()}
            failed = admin.show_failed()
    assert value(samples, "spoolgear_jobs_submitted_total", function="mail") == 3
    assert value(samples, "spoolgear_jobs_completed_total", function="mail", outcome="success") == 3
    assert (
        value(samples, "spoolgear_jobs_completed_total", function="welcome", outcome="failure") == 1
    )
    assert value(samples, "spoolgear_failed_jobs") == len(failed) == 1
    assert value(samples, "spoolgear_kept_results") == 4  # three mails and the failure
    # Each mail's payload and "sent"; the failure's payload.
    assert value(samples, "spoolgear_kept_result_bytes") == 3 * (1 + 4) + 1
    assert value(samples, "spoolgear_job_wait_seconds_count", function="mail") == 3
    assert value(samples, "spoolgear_job_run_seconds_count", function="mail") == 3
    assert value(samples, "spoolgear_job_run_seconds_bucket", function="mail", le="+Inf") == 3
    for name, row in status.items():
        queued = sum(
            value(samples, "spoolgear_jobs_queued", function=name, priority=priority)
            for priority in ("high", "normal", "low")
        )
        running = value(samples, "spoolgear_jobs_running", function=name)
        assert queued + running == row.total
        assert value(samples, "spoolgear_workers", function=name) == row.workers
    assert value(samples, "spoolgear_jobs_queued", function="report", priority="normal") == 1
    assert value(samples, "spoolgear_transferred_bytes_total", direction="in") > 0


def test_function_labels_are_capped() -> None:
    with run_broker("--metrics-listen", "0", "--metrics-max-functions", "2") as broker:
        with Client([broker.address]) as client:
            for name in ("a", "b", "c", "d", "e"):
                client.submit_background(name, b"x")
        samples = scrape(metrics_address(broker.listening))
    functions = {
        dict(labels)["function"] for (name, labels) in samples if name == "spoolgear_workers"
    }
    assert functions == {"a", "b", "_other"}
    assert value(samples, "spoolgear_jobs_queued", function="_other", priority="normal") == 3


def test_health_checks_and_unknown_paths() -> None:
    with run_broker("--metrics-listen", "127.0.0.1:0") as broker:
        address = metrics_address(broker.listening)
        assert address.startswith("127.0.0.1:")
        assert get(address, "/healthz") == (200, "ok\n")
        assert get(address, "/readyz") == (200, "ok\n")
        assert get(address, "/") == (404, "not here: /metrics, /healthz, /readyz\n")


def test_metrics_are_off_unless_asked_for() -> None:
    with run_broker() as broker:
        assert "metrics=" not in broker.listening


@pytest.mark.parametrize("bad", ["host", "127.0.0.1:70000"])
def test_a_bad_metrics_address_stops_start_up(bad: str) -> None:
    refused = pytest.raises(AssertionError, match="listen address")
    with refused, run_broker("--metrics-listen", bad):
        pass


def test_store_commits_are_timed_with_their_fsync(tmp_path: Path) -> None:
    with run_broker("--metrics-listen", "0", "--store", f"sqlite:{tmp_path}/jobs.db") as broker:
        with Client([broker.address]) as client:
            for n in range(3):
                client.submit_background("mail", b"%d" % n)  # answered once committed
        samples = scrape(metrics_address(broker.listening))
    commits = value(samples, "spoolgear_store_commits_total")
    assert commits >= 1
    assert value(samples, "spoolgear_store_batch_operations_sum") >= 3
    assert value(samples, "spoolgear_store_commit_seconds_count") == commits
    assert value(samples, "spoolgear_store_sync_seconds_count") == commits
    synced = value(samples, "spoolgear_store_sync_seconds_sum")
    assert 0 < synced <= value(samples, "spoolgear_store_commit_seconds_sum")


def test_flow_rules_are_exported_by_pattern() -> None:
    flags = ("--limit", "mail.*=120/m", "--max-running", "mail.*=4")
    with run_broker("--metrics-listen", "0", *flags, "--max-running-per-key", "import=1") as broker:
        with AdminClient(broker.address) as admin:
            admin.pause("import")
        samples = scrape(metrics_address(broker.listening))
    assert value(samples, "spoolgear_flow_rate_limit", pattern="mail.*") == 2.0
    assert value(samples, "spoolgear_flow_max_running", pattern="mail.*") == 4
    assert value(samples, "spoolgear_flow_max_running_per_key", pattern="import") == 1
    assert value(samples, "spoolgear_flow_paused", pattern="import") == 1
    assert value(samples, "spoolgear_flow_paused", pattern="mail.*") == 0
