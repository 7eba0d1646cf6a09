"""Cancelling a running job on real brokers and workers: the worker is told and stops at
its next progress report, the job's end is recorded as cancelled and never retried, and a
job that ignores its cancel ends its worker process after the grace period."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from broker.admin import AdminClient
from broker.client import Client, JobHandle
from broker.errors import JobCancelled
from broker.protocol.spool_request import DEFAULT_SPOOL_FUNCTION
from broker.protocol.uwsgi import encode_spool
from broker.worker import Worker, WorkerJob
from tests.helpers import ROOT, SPOOLGEAR, run_broker, wait_until


def running(address: str, function: str) -> bool:
    with AdminClient(address) as admin:
        return any(s.name == function and s.running for s in admin.status())


def test_a_running_job_stops_at_its_next_progress_report_and_is_not_retried() -> None:
    with run_broker("--retry-failures", "long=3") as broker:
        seen: list[str] = []

        def long(job: WorkerJob) -> bytes:
            try:
                for step in range(600):
                    time.sleep(0.05)
                    job.send_status(step, 600)
            except JobCancelled:
                seen.append("stopped")
                raise
            return b"finished"

        worker = Worker([broker.address])
        worker.register("long", long)
        worker.register("quick", lambda job: b"quick done")
        thread = threading.Thread(target=worker.work, kwargs={"max_jobs": 2})
        thread.start()
        with Client([broker.address]) as client:
            handle = client.submit_background("long", b"")
            wait_until(lambda: running(broker.address, "long"), "the long job runs")
            cancelled = subprocess.run(
                [*SPOOLGEAR, "cancel", handle.handle, "--server", broker.address],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert cancelled.returncode == 0, cancelled.stderr
            assert f"cancelled {handle.handle}" in cancelled.stdout
            wait_until(lambda: seen == ["stopped"], "the job stopped")
            assert client.submit("quick", b"").data == b"quick done"  # the worker goes on
            thread.join(timeout=30)
            state = client.job_state(handle)
            assert client.cancel(handle) is False  # gone: nothing left to cancel
        worker.close()
    assert state is not None and (state.status, state.attempts) == ("cancelled", 1)


GRACE_WORKER = """
import sys, time
from broker.worker import Worker

def stubborn(job):
    time.sleep(60)  # never reports progress, never checks

worker = Worker([sys.argv[1]], cancel_grace=1.0)
worker.register("stubborn", stubborn)
worker.work()
"""


def test_a_job_that_ignores_its_cancel_ends_its_process_after_the_grace_period() -> None:
    with run_broker() as broker:
        process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(GRACE_WORKER), broker.address],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            with Client([broker.address]) as client:
                handle = client.submit_background("stubborn", b"")
                wait_until(lambda: running(broker.address, "stubborn"), "the job runs")
                assert client.cancel(handle)
            status = process.wait(timeout=30)
        finally:
            process.kill()
            _, errors = process.communicate()
    assert status == 75  # EX_TEMPFAIL: supervisord or the pre-fork master starts another
    assert "was cancelled" in errors and "ending this process" in errors


SLOW_SPOOLER = """
import os, time
import uwsgi

def spooler(env):
    with open(os.environ["SLOW_LOG"], "a") as log:
        log.write(f"{os.getpid()} {env[b'name'].decode()}\\n")
    time.sleep(float(env.get(b"sleep", b"0")))
    return uwsgi.SPOOL_OK

uwsgi.spooler = spooler
"""


def test_a_spooler_ends_a_stuck_cancelled_job_and_its_master_starts_another(
    tmp_path: Path,
) -> None:
    (tmp_path / "slow.py").write_text(textwrap.dedent(SLOW_SPOOLER))
    log = tmp_path / "log"
    with run_broker() as broker:
        process = subprocess.Popen(
            [
                *SPOOLGEAR,
                "spooler",
                "-s",
                broker.address,
                "--import",
                "slow",
                "--cancel-grace",
                "1",
            ],
            cwd=tmp_path,
            env={"SLOW_LOG": str(log), "PYTHONPATH": str(ROOT)},
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            with Client([broker.address]) as client:
                stuck = spool_job_handle(client, b"stuck", b"60")
                wait_until(lambda: log.exists() and "stuck" in log.read_text(), timeout=20)
                assert client.cancel(stuck)
                spool_job_handle(client, b"after", b"0")
                wait_until(lambda: "after" in log.read_text(), "a new process ran it", timeout=30)
        finally:
            process.terminate()
            _, errors = process.communicate(timeout=30)
    pids = dict(reversed(line.split()) for line in log.read_text().splitlines())
    assert pids["stuck"] != pids["after"]  # the stuck one's process was ended and replaced
    assert "ending this process" in errors


def spool_job_handle(client: Client, name: bytes, sleep: bytes) -> JobHandle:
    """A spool job as ``uwsgi.spool(name=..., sleep=...)`` queues it."""
    body = encode_spool([(b"name", name), (b"sleep", sleep)], b"")
    return client.submit_background(DEFAULT_SPOOL_FUNCTION, body)
