"""Durability with a real broker process and a real SQLite file: kill -9, restart, corruption."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest

from broker.admin import AdminClient
from broker.banner import read_banner
from broker.client import Client, JobRequest
from broker.protocol.packets import PacketType
from broker.worker import Worker, WorkerJob
from tests.helpers import (
    SPOOLGEAR,
    RawConnection,
    burst_drain,
    pipelined_submitters,
    queued,
    require_peer,
    run_broker,
    wait_until,
)

T = PacketType


def drain(address: str) -> list[bytes]:
    """Run every queued job of ``f`` once with a burst worker; returns the payloads seen."""
    return [data for _, data in burst_drain(address, "f")]


@pytest.fixture(params=["sqlite", "spool", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each durable backend, as a --store URL."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_store")
    return f"sqlite:{tmp_path / 'jobs.db'}" if request.param == "sqlite" else f"spool:{tmp_path}"


@pytest.fixture(params=["sqlite", "postgresql"])
def paging_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each backend that pages, as a --store URL."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_store")
    return f"sqlite:{tmp_path / 'jobs.db'}"


def killable(store: str) -> tuple[str, ...]:
    """Broker options for ``store`` in tests that kill the broker: with PostgreSQL a short
    lease, since a restarted broker takes over a killed one's jobs once its lease is out."""
    if store.startswith("postgresql:"):
        return ("--store", store, "--store-lease", "1")
    return ("--store", store)


def wait_until_queued(address: str, count: int) -> None:
    """Until ``f`` has ``count`` jobs (at once, except after a shared store's takeover)."""
    wait_until(lambda: queued(address) >= count, "the jobs were taken over", timeout=30)


@pytest.mark.parametrize("sync", ["full", "normal"])
def test_kill_9_loses_no_acknowledged_job(store: str, sync: str) -> None:
    """Both ``--sync`` levels survive a crash of the broker (``normal`` only not one of
    the machine, which a test cannot stage)."""
    with (
        run_broker(*killable(store), "--sync", sync) as broker,
        pipelined_submitters(broker.port) as acked,
    ):
        while sum(map(len, acked)) < 2000:
            time.sleep(0.01)
        broker.process.kill()
        broker.process.wait()
    acknowledged = {payload for client in acked for payload in client}
    assert len(acknowledged) >= 2000
    with run_broker(*killable(store)) as broker:
        wait_until_queued(broker.address, len(acknowledged))
        ran = drain(broker.address)
    assert acknowledged <= set(ran)
    assert len(ran) == len(set(ran))  # and nothing ran twice


def test_sigterm_and_restart_keep_queue_order_schedules_and_handles(store: str) -> None:
    with run_broker("--store", store) as broker, Client([broker.address]) as client:
        client.submit_background("f", "low", priority=2)  # type: ignore[arg-type]
        client.submit_background("f", "high", priority=0)  # type: ignore[arg-type]
        last = client.submit_background("f", "normal")
        with RawConnection(broker.port) as raw:
            raw.send(T.SUBMIT_JOB_SCHED, b"tick", b"", b"0", b"3", b"", b"", b"", b"")
            assert raw.packet().type is T.JOB_CREATED
        broker.process.send_signal(signal.SIGTERM)
        assert broker.process.wait(10) == 0
    with run_broker("--store", store) as broker:
        with AdminClient(broker.address) as admin:
            assert [s.function for s in admin.show_schedules()] == ["tick"]
        assert drain(broker.address) == [b"high", b"normal", b"low"]
        with Client([broker.address]) as client:
            fresh = client.submit_background("f", "new")
        assert int(fresh.handle.rsplit(":", 1)[1]) > int(last.handle.rsplit(":", 1)[1])


def test_a_job_whose_worker_is_killed_runs_on_another(tmp_path: Path) -> None:
    gearman = require_peer("gearman")
    with run_broker("--store", f"sqlite:{tmp_path / 'jobs.db'}") as broker:
        stuck = subprocess.Popen(
            [
                gearman,
                "-h",
                "127.0.0.1",
                "-p",
                str(broker.port),
                "-w",
                "-f",
                "f",
                "--",
                "sleep",
                "30",
            ],
            start_new_session=True,
        )
        with Client([broker.address]) as client:
            try:
                handle = client.submit_background("f", "payload")
                wait_until(lambda: client.get_status(handle).running)
            finally:
                # The worker and the command it runs (which may hold its socket too).
                os.killpg(stuck.pid, signal.SIGKILL)
                stuck.wait()
            # Requeued once the broker has seen the connection close (not at the kill).
            wait_until(lambda: not client.get_status(handle).running)
        assert drain(broker.address) == [b"payload"]


def test_a_job_running_when_the_broker_dies_is_requeued_with_an_attempt(store: str) -> None:
    with run_broker(*killable(store)) as broker, RawConnection(broker.port) as raw:
        raw.send(T.SUBMIT_JOB_BG, b"f", b"", b"interrupted")
        raw.packet()
        raw.send(T.CAN_DO, b"f")
        raw.send(T.GRAB_JOB)
        assert raw.packet().type is T.JOB_ASSIGN
        time.sleep(0.2)  # the MarkRunning is committed with the next batch
        broker.process.kill()
        broker.process.wait()
    with run_broker(*killable(store)) as broker:
        wait_until_queued(broker.address, 1)
        with AdminClient(broker.address) as admin:
            (job,) = admin.show_jobs()
        assert (job.retries, job.background) == (1, True)
        assert drain(broker.address) == [b"interrupted"]


def test_a_commit_nobody_waits_for_waits_and_one_an_answer_waits_for_does_not(
    tmp_path: Path,
) -> None:
    """``--lazy-commit-delay``: the end of a job (no reply waits for it) is committed
    later, with the next commit an answer waits for, which starts at once."""
    path = tmp_path / "jobs.db"

    def stored() -> list[bytes]:
        with closing(sqlite3.connect(path)) as db:
            return [row[0] for row in db.execute("SELECT data FROM jobs ORDER BY seq")]

    # The longest the option allows, so a busy machine's fsync is not taken for the wait.
    lazy = 1.0
    with (
        run_broker("--store", f"sqlite:{path}", "--lazy-commit-delay", str(lazy)) as broker,
        RawConnection(broker.port) as raw,
    ):
        raw.send(T.SUBMIT_JOB_BG, b"f", b"", b"first")
        (handle,) = raw.packet().args
        first_committed = time.monotonic()
        raw.send(T.CAN_DO, b"f")
        raw.send(T.GRAB_JOB)
        assert raw.packet().type is T.JOB_ASSIGN
        raw.send(T.WORK_COMPLETE, handle, b"")
        time.sleep(0.1)
        assert stored() == [b"first"]  # ended, but its commit waits
        raw.send(T.SUBMIT_JOB_BG, b"f", b"", b"second")
        assert raw.packet().type is T.JOB_CREATED
        # Waiting for the lazy commit would have taken until about ``lazy``.
        assert time.monotonic() - first_committed < lazy * 0.9
        assert stored() == [b"second"]  # and carried the first's end along


def test_a_graceful_stop_commits_what_waited_lazily(tmp_path: Path) -> None:
    """SIGTERM writes the ends of jobs that were waiting for a lazy commit: nothing that
    finished runs again after a clean restart."""
    store = f"sqlite:{tmp_path / 'jobs.db'}"
    with run_broker("--store", store, "--lazy-commit-delay", "1") as broker:
        with Client([broker.address]) as client:
            client.submit_background("f", b"done")
            client.submit_background("f", b"left")
        with RawConnection(broker.port) as raw:
            raw.send(T.CAN_DO, b"f")
            raw.send(T.GRAB_JOB)
            job = raw.packet()
            assert job.args[2] == b"done"
            raw.send(T.WORK_COMPLETE, job.args[0], b"")
            raw.send(T.ECHO_REQ, b"sync")
            assert raw.packet().type is T.ECHO_RES
        broker.process.send_signal(signal.SIGTERM)
        assert broker.process.wait(10) == 0
    with run_broker("--store", store) as broker:
        assert drain(broker.address) == [b"left"]


def test_a_corrupt_store_is_set_aside_with_its_journal_and_the_broker_starts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    path.write_bytes(b"garbage" * 1000)
    Path(f"{path}-wal").write_bytes(b"a journal worth keeping")
    process = subprocess.Popen(
        [*SPOOLGEAR, "serve", "--port", "0", "--store", f"sqlite:{path}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        read_banner(process.stdout.readline())  # it started
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert f"store {path} is damaged" in stderr
    assert "Traceback" not in stderr
    (aside,) = tmp_path.glob("jobs.db.corrupt-*-wal")
    assert aside.read_bytes() == b"a journal worth keeping", "moved, never deleted"
    assert Path(str(aside)[:-4]).read_bytes() == b"garbage" * 1000


def test_failed_jobs_from_the_command_line(tmp_path: Path) -> None:
    with run_broker(
        "--store", f"sqlite:{tmp_path / 'jobs.db'}", "--retry-failures", "f=2"
    ) as broker:

        def explode(job: WorkerJob) -> None:
            raise RuntimeError("disk full")

        with Client([broker.address]) as client, Worker([broker.address]) as worker:
            client.submit_background("f", "x")
            worker.register("f", explode)
            worker.work(burst=True)

        def cli(*args: str) -> str:
            result = subprocess.run(
                [*SPOOLGEAR, "failed", "--server", broker.address, *args],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert result.returncode == 0, result.stderr
            return result.stdout

        (record,) = json.loads(cli("--json"))
        assert (record["function"], record["attempts"]) == ("f", 2)
        assert record["error"] == "RuntimeError: disk full; gave up after 2 attempts"
        assert "disk full" in cli()
        assert cli("--retry", "all") == "1 failed job(s) queued again\n"
        assert cli() == "no failed jobs\n"
        assert drain(broker.address) == [b"x"]


@pytest.mark.parametrize("sync", ["full", "normal"])
def test_a_small_queue_window_keeps_jobs_in_the_store_until_needed(
    paging_store: str, sync: str
) -> None:
    """At ``normal`` SQLite commits and reads pages on the event loop's thread."""
    store = paging_store
    payloads = [b"%d" % n for n in range(300)]
    with run_broker("--store", store, "--queue-window", "20", "--sync", sync) as broker:
        with Client([broker.address]) as client:
            for payload in payloads:
                client.submit_background("f", payload)
        broker.process.send_signal(signal.SIGTERM)
        assert broker.process.wait(10) == 0
    with run_broker("--store", store, "--queue-window", "20", "--sync", sync) as broker:
        with AdminClient(broker.address) as admin:
            assert [(s.name, s.total) for s in admin.status()] == [("f", 300)]
            assert len(admin.show_jobs()) == 20
        # A burst worker stops at its first NO_JOB: it must never get one while jobs wait.
        assert drain(broker.address) == payloads


@pytest.mark.parametrize("sync", ["full", "normal"])
def test_queues_of_large_jobs_restart_and_page_in_within_the_byte_budget(
    tmp_path: Path, sync: str
) -> None:
    """1,500 jobs of 64 KiB (94 MiB) with one page limited to 256 KiB: the restart reads one
    budget's worth per queue, every job comes back once and in order, and the broker's
    memory stays well below the queue's size (a page used to be one string of it all).
    At ``normal`` the 375 pages are read on the event loop's thread, one after another."""
    store = f"sqlite:{tmp_path / 'jobs.db'}"
    payloads = [b"%05d" % n + b"x" * (64 << 10) for n in range(1500)]
    with run_broker("--store", store) as broker, Client([broker.address]) as client:
        for start in range(0, len(payloads), 100):
            client.submit_many(
                [
                    JobRequest("big", payload, background=True)
                    for payload in payloads[start : start + 100]
                ]
            )
    with run_broker("--store", store, "--page-bytes", str(256 << 10), "--sync", sync) as broker:
        with AdminClient(broker.address) as admin:
            assert [(s.name, s.total) for s in admin.status()] == [("big", 1500)]
            assert len(admin.show_jobs()) == 4  # 256 KiB of 64 KiB jobs
        resident = int(Path(f"/proc/{broker.process.pid}/statm").read_text().split()[1]) * 4096
        assert resident < 60 << 20, "far less than the 94 MiB queued"
        seen = [data[:5] for _, data in burst_drain(broker.address, "big")]
    assert seen == [payload[:5] for payload in payloads]


@pytest.mark.timeout(600)  # 2.6 GB through the store: a minute or two
@pytest.mark.parametrize(
    ("count", "size"),
    [(10_000, 64 << 10), (80_000, 24 << 10)],
    ids=["10k x 64 KiB", "80k x 24 KiB"],
)
def test_a_broker_restarts_with_large_queues_and_serves_them_all_in_order(
    tmp_path: Path, count: int, size: int
) -> None:
    """The sizes that used to make a restart fail (a window read as one string: MemoryError,
    "string or blob too big"), with the default budgets."""
    store = f"sqlite:{tmp_path / 'jobs.db'}"
    filler = b"x" * (size - 6)
    with run_broker("--store", store) as broker, Client([broker.address]) as client:
        for start in range(0, count, 500):
            client.submit_many(
                [
                    JobRequest("big", b"%06d" % n + filler, background=True)
                    for n in range(start, start + 500)
                ]
            )
    with run_broker("--store", store) as broker:
        with AdminClient(broker.address) as admin:
            assert [(s.name, s.total) for s in admin.status()] == [("big", count)]
        resident = int(Path(f"/proc/{broker.process.pid}/statm").read_text().split()[1]) * 4096
        assert resident < 400 << 20, "a window's worth in memory, not the queue"
        seen = [data[:6] for _, data in burst_drain(broker.address, "big")]
    assert seen == [b"%06d" % n for n in range(count)]
