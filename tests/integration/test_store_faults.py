"""The SQLite store under faults: what cannot be opened is refused and left as it was; what
cannot be written stops the acknowledgements and the broker, with the real cause.

Each test counts acknowledged jobs and checks every one is still there afterwards.
"""

from __future__ import annotations

import os
import resource
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from broker.banner import read_banner
from broker.client import Client, JobRequest
from broker.errors import BrokerError
from tests.helpers import SPOOLGEAR, burst_drain, require_peer, run_broker


def fill(store: Path, count: int) -> set[bytes]:
    """Queue ``count`` acknowledged jobs in a broker on ``store``; their payloads."""
    with run_broker("--store", f"sqlite:{store}") as broker, Client([broker.address]) as client:
        for number in range(count):
            client.submit_background("work", b"job %d" % number)
    return {b"job %d" % number for number in range(count)}


def drained(store: Path) -> set[bytes]:
    with run_broker("--store", f"sqlite:{store}") as broker:
        return {data for _, data in burst_drain(broker.address, "work")}


def refused_start(store: Path, *, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, *SPOOLGEAR, "serve", "--port", "0", "--store", f"sqlite:{store}"],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_locked_store_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    store = tmp_path / "jobs.db"
    queued = fill(store, 50)
    holder = sqlite3.connect(store, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of something
    try:
        result = refused_start(store)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode != 0 and result.stdout == ""
    assert f"cannot open the store {store}: database is locked; nothing was moved" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*corrupt*"))
    assert drained(store) == queued


def test_a_second_broker_on_the_same_store_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "jobs.db"
    with run_broker("--store", f"sqlite:{store}"):
        result = refused_start(store)
    assert result.returncode != 0
    assert "another broker is using it" in result.stderr


def without_root_powers() -> tuple[str, ...]:
    """A prefix that runs a command bound by file permissions even as root (which they do
    not bind otherwise): util-linux's setpriv without the capabilities that bypass them."""
    if os.geteuid() != 0:
        return ()
    return (require_peer("setpriv"), "--bounding-set=-dac_override,-dac_read_search", "--")


def test_a_read_only_store_or_directory_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    store = tmp_path / "jobs.db"
    queued = fill(store, 20)
    prefix = without_root_powers()
    for path in tmp_path.iterdir():
        path.chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        result = refused_start(store, prefix=prefix)
        missing = refused_start(tmp_path / "sub" / "jobs.db", prefix=prefix)
    finally:
        tmp_path.chmod(0o755)
        for path in tmp_path.iterdir():
            path.chmod(0o644)
    assert result.returncode != 0
    assert f"cannot open the store {store}:" in result.stderr
    assert "nothing was moved or deleted" in result.stderr and "Traceback" not in result.stderr
    assert missing.returncode != 0 and "Permission denied" in missing.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["jobs.db", "jobs.db.lock"]
    assert drained(store) == queued


@contextmanager
def broker_process(
    store: Path, preexec: Callable[[], None] | None = None, sync: str = "full"
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A broker expected to stop by itself: the process and its address."""
    process = subprocess.Popen(
        [*SPOOLGEAR, "serve", "--port", "0", "--store", f"sqlite:{store}", "--sync", sync],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec,
    )
    assert process.stdout is not None
    try:
        yield process, read_banner(process.stdout.readline()).gearman
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


# At ``normal`` SQLite commits on the event loop's thread (``Store.writes_on_loop``).
SYNC_LEVELS = pytest.mark.parametrize("sync", ["full", "normal"])


@SYNC_LEVELS
def test_a_store_deleted_while_running_stops_the_acknowledgements(
    tmp_path: Path, sync: str
) -> None:
    store = tmp_path / "jobs.db"
    with broker_process(store, sync=sync) as (process, address), Client([address]) as client:
        client.submit_background("work", b"before")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store}{suffix}").unlink()
        with pytest.raises(BrokerError, match=r"STORE_FAILED: the job store failed: the store "):
            client.submit_background("work", b"after")
        _, stderr = process.communicate(timeout=10)
    assert process.returncode != 0
    assert f"the store {store} is gone" in stderr
    assert "Traceback" not in stderr


@SYNC_LEVELS
def test_a_full_disk_stops_the_broker_and_a_restart_serves_every_acknowledged_job(
    tmp_path: Path, sync: str
) -> None:
    """The store may grow to 2 MiB (RLIMIT_FSIZE: writes past it fail as on a full disk)."""
    store = tmp_path / "jobs.db"
    limit = 2 << 20

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    acknowledged = set()
    with (
        broker_process(store, small_disk, sync) as (process, address),
        Client([address]) as client,
    ):
        for number in range(1000):
            payload = b"%04d" % number + b"x" * 16_000
            try:
                client.submit_background("work", payload)
            except BrokerError:
                break
            acknowledged.add(payload)
        else:
            pytest.fail("the store never filled up")
        _, stderr = process.communicate(timeout=20)
    assert process.returncode != 0
    assert f"writing to the store {store} failed:" in stderr
    assert "cannot rollback" not in stderr and "Traceback" not in stderr
    assert 0 < len(acknowledged) < 1000
    assert drained(store) >= acknowledged


def test_the_store_file_shrinks_once_its_queue_drains(tmp_path: Path) -> None:
    store = tmp_path / "jobs.db"
    # Kept results would hold the payloads until they expire (docs/durability.md).
    keep_none = ("--keep-results", "0")
    with (
        run_broker("--store", f"sqlite:{store}", *keep_none) as broker,
        Client([broker.address]) as client,
    ):
        for start in range(0, 3000, 100):
            client.submit_many(
                [
                    JobRequest("work", b"%05d" % n + b"x" * 16_000, background=True)
                    for n in range(start, start + 100)
                ]
            )
        full = store.stat().st_size
        assert len(burst_drain(broker.address, "work")) == 3000
        with Client([broker.address]) as more:  # a few more commits after the drain
            for _ in range(20):
                more.submit_background("tick", b"")
    assert full > 30 << 20
    assert store.stat().st_size < 16 << 20, "the drained queue's pages went back"


def test_a_store_damaged_inside_is_refused_at_start_and_left_for_recovery(tmp_path: Path) -> None:
    store = tmp_path / "jobs.db"
    fill(store, 200)
    with store.open("r+b") as damaged:  # scribble over the middle of the table's pages
        damaged.seek(store.stat().st_size // 2)
        damaged.write(b"\xa5" * 8192)
    result = refused_start(store)
    assert result.returncode != 0
    assert f"cannot read the store {store}:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*corrupt*")), "left in place for sqlite3's .recover"
