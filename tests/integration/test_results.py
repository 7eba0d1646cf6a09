"""Results kept by real brokers: looked up from the Python client, the admin protocol and
``spoolgear result``; kept across a restart with SQLite, expired after --keep-results,
and answered by any broker of a shared PostgreSQL store."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from broker.admin import AdminClient
from broker.client import Client, JobHandle
from broker.errors import JobException, RetryLater, WorkFailed
from broker.worker import Worker, WorkerJob
from tests.helpers import SPOOLGEAR, run_broker, wait_until


def run_one(address: str, function: str, outcome: bytes | Exception, name: str) -> None:
    """A worker named ``name`` takes one job of ``function`` and ends it with ``outcome``."""

    def run(job: WorkerJob) -> bytes:
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    with Worker([address], client_id=name) as worker:
        worker.register(function, run)
        assert worker.work(max_jobs=1) == 1


def cli(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SPOOLGEAR, "result", "--server", address, *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_failed_then_successful_job_is_told_everywhere_and_kept_across_a_restart(
    tmp_path: Path,
) -> None:
    store = ("--store", f"sqlite:{tmp_path / 'jobs.db'}", "--retry-failures", "report=3")
    with run_broker(*store) as broker:
        with Client([broker.address]) as client:
            handle = client.submit_background("report", b"2026")
            assert client.job_state(handle).status == "queued"  # type: ignore[union-attr]
            run_one(broker.address, "report", WorkFailed("printer jammed"), "worker-a")
            run_one(broker.address, "report", b"12 pages", "worker-b")
            state = client.job_state(handle)
        assert state is not None
        assert (state.status, state.attempts, state.workers) == (
            "successful",
            2,
            ("worker-a", "worker-b"),
        )
        assert state.errors == ("printer jammed",) and state.value == b"12 pages"
        assert state.enqueued_at is not None and state.finished_at is not None
        assert state.enqueued_at <= state.started_at <= state.finished_at  # type: ignore[operator]
        shown = cli(broker.address, handle.handle)
        assert shown.returncode == 0, shown.stderr
        assert "status" in shown.stdout and "successful" in shown.stdout
        assert "printer jammed" in shown.stdout and "12 pages" in shown.stdout
    with run_broker(*store) as restarted:
        as_json = cli(restarted.address, handle.handle, "--json")
        assert as_json.returncode == 0, as_json.stderr
        fields = json.loads(as_json.stdout)
        assert (fields["status"], fields["workers"]) == ("successful", ["worker-a", "worker-b"])
        unknown = cli(restarted.address, "H:nowhere:1")
        assert unknown.returncode == 1
        assert "knows no job H:nowhere:1" in unknown.stderr


def test_a_job_retried_later_keeps_its_handle_and_its_time_across_kill_9(
    tmp_path: Path,
) -> None:
    """WORK_RETRY: the same job runs again after the delay the worker asked for, counted
    as an attempt, and a broker killed meanwhile still holds it until then."""
    store = ("--store", f"sqlite:{tmp_path / 'jobs.db'}")
    with run_broker(*store) as broker:
        with Client([broker.address]) as client:
            handle = client.submit_background("report", b"2026")
            run_one(broker.address, "report", RetryLater("printer jammed", 3.0), "worker-a")
            asked_at = time.time()
            waiting = client.job_state(handle)
        assert waiting is not None
        assert (waiting.status, waiting.attempts, waiting.errors) == (
            "queued",
            1,
            ("printer jammed",),
        )
        with sqlite3.connect(tmp_path / "jobs.db") as db:  # committed (a moment after)
            wait_until(lambda: db.execute("SELECT run_at FROM jobs").fetchone()[0] > 0)
        broker.process.kill()
    with run_broker(*store) as restarted:
        run_one(restarted.address, "report", b"12 pages", "worker-b")
        ran_at = time.time()
        with AdminClient(restarted.address) as admin:
            state = admin.result(handle.handle)
    assert ran_at >= asked_at + 2.0  # a lower bound only: the delay held across the kill
    assert state is not None and (state.status, state.value) == ("successful", b"12 pages")


def test_a_foreground_job_asking_to_retry_later_fails_at_once() -> None:
    """Its client is waiting: it gets the report now, as on WORK_EXCEPTION."""
    with run_broker() as broker:
        worker = threading.Thread(
            target=run_one, args=(broker.address, "f", RetryLater("not now", 60.0), "w")
        )
        worker.start()
        with Client([broker.address]) as client, pytest.raises(JobException) as raised:
            client.submit("f", b"x", timeout=30)
        worker.join(timeout=30)
    assert raised.value.data == b"not now"


def test_results_expire_after_keep_results() -> None:
    with run_broker("--keep-results", "1s") as broker:
        with Client([broker.address]) as client:
            handle = client.submit_background("f")
        run_one(broker.address, "f", b"done", "w")
        with AdminClient(broker.address) as admin:
            assert admin.result(handle.handle) is not None
            wait_until(lambda: admin.result(handle.handle) is None, "the result expired")


def test_a_bad_keep_results_is_refused_by_name() -> None:
    started = subprocess.run(
        [*SPOOLGEAR, "serve", "--port", "0", "--keep-results", "soon"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert started.returncode == 2
    assert "--keep-results" in started.stderr and "not a duration" in started.stderr


def test_any_broker_of_a_shared_store_answers_for_any_job(postgres_store: str) -> None:
    with (
        run_broker("--store", postgres_store) as first,
        run_broker("--store", postgres_store) as second,
    ):
        with Client([first.address]) as client:
            handle = client.submit_background("f")
        asked_second = JobHandle(second.address, handle.handle)
        with Client([second.address]) as client:
            assert client.job_state(asked_second).status == "queued"  # type: ignore[union-attr]
            run_one(first.address, "f", b"from the first", "w")
            # The first broker writes a finished job's end within --lazy-commit-delay.
            wait_until(
                lambda: client.job_state(asked_second).status == "successful",  # type: ignore[union-attr]
                "the second broker saw the first's result",
            )
            state = client.job_state(asked_second)
        assert state is not None and state.value == b"from the first"
