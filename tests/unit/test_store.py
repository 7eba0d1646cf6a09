"""The store contract, run against every backend that keeps data (and the memory one)."""

from __future__ import annotations

import fcntl
import logging
import multiprocessing
import sqlite3
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from broker.errors import ConfigurationError, StoreUnavailable
from broker.protocol.uwsgi import decode_spool, encode_spool
from broker.store import open_store, pg_schema
from broker.store import operations as ops
from broker.store.base import MemoryStore, PagingStore, Store
from broker.store.postgresql import PostgreSQLStore
from broker.store.spool_dir import SpoolStore
from broker.store.sqlite import SQLiteStore


def job(number: int, priority: int = 1, seq: int | None = None, **changes: object) -> ops.StoredJob:
    record = ops.StoredJob(
        number,
        b"f",
        b"u%d" % number,
        b"data\0%d" % number,
        priority,
        0.0,
        b"",
        0,
        False,
        number if seq is None else seq,
    )
    return record._replace(**changes)


Reopen = Callable[[], Store]


@pytest.fixture(params=["sqlite", "spool", "postgresql"])
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Reopen:
    """A factory that opens the same durable store again (as after a restart)."""
    opened: list[Store] = []
    urls = {"sqlite": f"sqlite:{tmp_path / 'jobs.db'}", "spool": f"spool:{tmp_path}"}
    if request.param == "postgresql":
        urls["postgresql"] = request.getfixturevalue("postgres_store")
    url = urls[request.param]

    def factory() -> Store:
        if opened:
            opened[-1].close()
        opened.append(open_store(url))
        return opened[-1]

    request.addfinalizer(lambda: opened[-1].close())
    return factory


def test_jobs_come_back_in_priority_then_queue_order(reopen: Reopen) -> None:
    store = reopen()
    store.write(
        [
            ops.AddJob(job(1, priority=2)),
            ops.AddJob(job(2)),
            ops.AddJob(job(3, priority=0)),
            ops.AddJob(job(4)),
        ]
    )
    assert [j.number for j in reopen().load().jobs] == [3, 2, 4, 1]


def test_every_field_survives(reopen: Reopen) -> None:
    original = job(7, run_at=1.8e9, reducer=b"red", attempts=2, running=True, key=b"acme")
    waiting = job(8, run_at=ops.WAITING, after=b"chain 7")
    reopen().write([ops.AddJob(original), ops.AddJob(waiting)])
    assert reopen().load().jobs == [original, waiting]


def test_a_requeue_later_and_flow_rules_survive(reopen: Reopen) -> None:
    store = reopen()
    rule = ops.FlowRule(b"mail.*", rate=5, per=60.0, running=2, paused=True, per_key=1)
    store.write([ops.AddJob(job(1)), ops.MarkRunning(1), ops.SetFlowRule(rule)])
    store.write([ops.Requeue(1, 1, 10, run_at=1.9e9), ops.SetFlowRule(ops.FlowRule(b"x", rate=1))])
    state = reopen().load()
    assert [(j.number, j.run_at, j.running) for j in state.jobs] == [(1, 1.9e9, False)]
    assert state.flow_rules == [rule, ops.FlowRule(b"x", rate=1)]
    reopen().write([ops.DeleteFlowRule(b"x")])
    assert reopen().load().flow_rules == [rule]


def test_running_requeue_and_delete(reopen: Reopen) -> None:
    store = reopen()
    store.write([ops.AddJob(job(1)), ops.AddJob(job(2)), ops.AddJob(job(3))])
    store.write([ops.MarkRunning(1), ops.MarkRunning(2), ops.Requeue(1, 1, 10), ops.DeleteJob(3)])
    loaded = reopen().load().jobs
    assert [(j.number, j.attempts, j.running) for j in loaded] == [(2, 0, True), (1, 1, False)]


def test_failed_list_and_schedules(reopen: Reopen) -> None:
    store = reopen()
    failed = ops.FailedJob(1, b"f", b"u", b"d", 1, 3, "boom", 1.7e9)
    schedule = ops.StoredSchedule(5, b"tick", b"", b"", "*/5 * * * *", 1.7e9 + 0.25, 3)
    store.write(
        [
            ops.AddJob(job(1)),
            ops.FailJob(failed),
            ops.AddSchedule(schedule),
            ops.AddSchedule(schedule._replace(number=6)),
            ops.DeleteSchedule(6),
            ops.FailJob(failed._replace(number=2)),
            ops.DeleteFailed(2),
        ]
    )
    state = reopen().load()
    assert (state.jobs, state.failed, state.schedules) == ([], [failed], [schedule])


def test_handle_numbers_never_repeat_across_restarts(reopen: Reopen) -> None:
    first = reopen().load().next_number
    assert first >= 1
    reopen().write([ops.ReserveHandles(first + 100_000)])
    assert reopen().load().next_number >= first + 100_000


def test_an_sqlite_batch_is_all_or_nothing(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "jobs.db")
    store.write([ops.AddJob(job(1))])
    with pytest.raises(StoreUnavailable, match="NOT NULL constraint failed"):
        store.write([ops.DeleteJob(1), ops.AddJob(job(2, data=None))])  # data NOT NULL
    assert [j.number for j in store.load().jobs] == [1]
    store.close()


def test_a_job_added_and_ended_in_one_batch_never_reaches_the_disk(reopen: Reopen) -> None:
    store = reopen()
    store.write(
        [
            ops.AddJob(job(1)),
            ops.MarkRunning(1),
            ops.DeleteJob(1),
            ops.AddJob(job(2)),
            ops.MarkRunning(2),
            ops.Requeue(2, 1, 9),
        ]
    )
    assert [(j.number, j.attempts, j.running) for j in reopen().load().jobs] == [(2, 1, False)]


def test_a_corrupt_file_is_moved_aside_with_its_name_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "jobs.db"
    path.write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.ERROR):
        store = SQLiteStore(path)
    assert store.load().jobs == []
    store.write([ops.AddJob(job(1))])
    store.close()
    (aside,) = tmp_path.glob("jobs.db.corrupt-*")
    assert aside.read_bytes().startswith(b"this is not a database")
    assert str(path) in caplog.text and str(aside) in caplog.text


def test_a_truncated_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = SQLiteStore(path)
    store.write([ops.AddJob(job(n)) for n in range(1, 200)])
    store.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(path.read_bytes()[:3000])
    store = SQLiteStore(path)
    assert store.load().jobs == []
    store.close()
    assert list(tmp_path.glob("jobs.db.corrupt-*"))


def test_a_bad_row_is_skipped_and_reported_and_the_rest_loads(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = SQLiteStore(path)
    store.write([ops.AddJob(job(1)), ops.AddJob(job(2))])
    store.db.execute("UPDATE jobs SET priority = 999 WHERE number = 1")  # past MAX_RANK
    store.db.execute("UPDATE jobs SET function = 'text' WHERE number = 2")
    store.write([ops.AddJob(job(3))])
    state = store.load()
    store.close()
    assert [j.number for j in state.jobs] == [3]
    assert len(state.problems) == 2
    assert all(str(path) in problem for problem in state.problems)


def test_memory_store_keeps_nothing() -> None:
    store = open_store("memory:")
    assert isinstance(store, MemoryStore) and not store.durable
    assert store.load().jobs == []


def test_store_urls(tmp_path: Path) -> None:
    store = open_store(f"sqlite:{tmp_path / 'a' / 'b.db'}")
    assert store.durable and store.describe() == f"sqlite:{tmp_path / 'a' / 'b.db'}"
    store.close()
    for bad in ("redis://x", "sqlite:", "nothing"):
        with pytest.raises(ConfigurationError):
            open_store(bad)


def test_spool_files_are_uwsgi_spool_files(tmp_path: Path) -> None:
    store = open_store(f"spool:{tmp_path}")
    store.write([ops.AddJob(job(3, run_at=2e9))])
    (path,) = tmp_path.glob("uwsgi_spoolfile_on_*")
    pairs, body = decode_spool(path.read_bytes())
    assert body == b"data\0" + b"3"
    assert dict(pairs)[b"at"] == b"2000000000" and path.stat().st_mtime == 2e9
    assert dict(pairs)[b"spoolgear_function"] == b"f"


def test_bad_spool_files_are_set_aside_foreign_and_locked_ones_left(tmp_path: Path) -> None:
    store = open_store(f"spool:{tmp_path}")
    store.write([ops.AddJob(job(1)), ops.AddJob(job(2)), ops.AddJob(job(3))])
    torn = tmp_path / "uwsgi_spoolfile_on_spoolgear_2"
    torn.write_bytes(torn.read_bytes()[:10])
    foreign = tmp_path / "uwsgi_spoolfile_on_vm_1_1_1_1_1"
    foreign.write_bytes(encode_spool([(b"ud_spool_func", b"send_mail")]))
    state = open_store(f"spool:{tmp_path}").load()
    assert [j.number for j in state.jobs] == [1, 3]
    assert (tmp_path / "corrupt" / torn.name).exists() and foreign.exists()
    assert any(str(torn) in p and "truncated" in p for p in state.problems)
    assert any(str(foreign) in p and "--spool-ingest" in p for p in state.problems)
    with open(tmp_path / "uwsgi_spoolfile_on_spoolgear_3", "rb+") as holder:
        fcntl.lockf(holder, fcntl.LOCK_EX)
        probe = multiprocessing.get_context("fork").Process(
            target=_load_numbers, args=(str(tmp_path),)
        )
        probe.start()
        probe.join(10)
    assert probe.exitcode == 0


def _load_numbers(directory: str) -> None:
    """In another process (fcntl locks are per process): the locked job is skipped."""
    state = open_store(f"spool:{directory}").load()
    numbers = [j.number for j in state.jobs]
    if numbers != [1] or not any("locked" in problem for problem in state.problems):
        raise SystemExit(f"unexpected {numbers} {state.problems}")


def test_a_schema_1_store_gets_the_schedule_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE schedules (number INTEGER PRIMARY KEY, function BLOB NOT NULL,
            unique_key BLOB NOT NULL, data BLOB NOT NULL, cron TEXT NOT NULL);
        INSERT INTO schedules VALUES (4, x'7469636b', x'', x'', '*/5 * * * *');""")
    db.commit()
    db.close()
    store = SQLiteStore(path)
    assert store.load().schedules == [
        ops.StoredSchedule(4, b"tick", b"", b"", "*/5 * * * *", 0.0, 0)
    ]
    store.close()


def test_a_schema_3_store_gets_keys_and_waits_with_its_jobs_kept(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE jobs (number INTEGER PRIMARY KEY, function BLOB NOT NULL,
            unique_key BLOB NOT NULL, data BLOB NOT NULL, priority INTEGER NOT NULL,
            run_at REAL NOT NULL, reducer BLOB NOT NULL, attempts INTEGER NOT NULL,
            running INTEGER NOT NULL, seq INTEGER NOT NULL);
        INSERT INTO jobs VALUES (7, x'66', x'', x'64', 1, 0, x'', 0, 0, 1);""")
    db.commit()
    db.close()
    store = SQLiteStore(path)
    assert store.load().jobs == [job(7, unique=b"", data=b"d", seq=1)]
    store.write([ops.SetFlowRule(ops.FlowRule(b"f", paused=True))])
    assert store.load().flow_rules == [ops.FlowRule(b"f", paused=True)]
    store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_pages_stop_at_the_limit_and_say_whether_more_are_left(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:{tmp_path / 'jobs.db'}"
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_store")
    store = open_store(url)
    try:
        store.write([ops.AddJob(job(n)) for n in range(1, 8)])
        assert isinstance(store, PagingStore)
        first = store.page(b"f", 1, 0, 3)
        assert [j.number for j in first.rows] == [1, 2, 3] and first.more
        last = store.page(b"f", 1, first.rows[-1].seq + 1, 10)
        assert [j.number for j in last.rows] == [4, 5, 6, 7] and not last.more
    finally:
        store.close()


@pytest.mark.parametrize("sync", ["full", "normal"])
def test_sync_decides_what_an_acknowledgement_waits_for(
    sync: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """``full`` fsyncs before a batch is acknowledged; ``normal`` hands it to the operating
    system (or to PostgreSQL without waiting for its disk), as uWSGI's spooler does."""
    sqlite_store = SQLiteStore(tmp_path / "jobs.db", sync=sync)
    synchronous = sqlite_store.db.execute("PRAGMA synchronous").fetchone()[0]
    sqlite_store.close()
    assert synchronous == {"full": 2, "normal": 1}[sync]

    spool_store = SpoolStore(tmp_path / "spool", sync=sync)
    spool_store.write([ops.AddJob(job(1))])
    spool_store.close()
    assert (spool_store.sync_seconds > 0) == (sync == "full")

    postgresql_store = PostgreSQLStore(request.getfixturevalue("postgres_store"), sync=sync)
    with postgresql_store.db.transaction():
        setting = postgresql_store.db.execute("SHOW synchronous_commit").fetchone()
    postgresql_store.close()
    assert setting == ({"full": "on", "normal": "off"}[sync],)


def test_a_postgresql_batch_written_again_adds_nothing_and_a_known_unique_coalesces(
    postgres_store: str,
) -> None:
    """New jobs are copied straight in; a batch that meets rows already there (written
    again after a lost connection, or a unique another job of its function holds) is
    undone and added row by row instead, and nothing else in it is lost."""
    store = PostgreSQLStore(postgres_store)
    try:
        batch: list[ops.Operation] = [ops.AddJob(job(n)) for n in (1, 2)]
        store.write(batch)
        store.write(batch)
        assert store.coalesced == {}
        store.write([ops.AddJob(job(3)), ops.AddJob(job(4, unique=b"u1"))])
        assert store.coalesced == {4: 1}
        assert [j.number for j in store.load().jobs] == [1, 2, 3]
    finally:
        store.close()


def test_a_version_1_postgresql_store_is_migrated_with_its_jobs(postgres_store: str) -> None:
    """A database a version-1 broker made gets version 2's indexes and version 3's results
    table at the next start, in place, its jobs kept; one that says a version this
    spoolgear does not know is refused."""
    with psycopg.connect(postgres_store, autocommit=True) as db:
        db.execute(pg_schema.MIGRATIONS[0])
        db.execute("CREATE TABLE spoolgear_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL)")
        db.execute("INSERT INTO spoolgear_meta VALUES ('schema_version', 1)")
        db.execute(  # version 1's columns
            "INSERT INTO spoolgear_jobs VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (*job(7)[:10], None),
        )
    PostgreSQLStore(postgres_store).close()
    with psycopg.connect(postgres_store, autocommit=True) as db:
        version = db.execute("SELECT value FROM spoolgear_meta").fetchone()
        indexes = db.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'spoolgear_jobs'"
        ).fetchall()
        numbers = db.execute("SELECT number FROM spoolgear_jobs").fetchall()
        results = db.execute("SELECT count(*) FROM spoolgear_results").fetchone()
        db.execute("UPDATE spoolgear_meta SET value = value + 1")
    assert version == (len(pg_schema.MIGRATIONS),) == (4,)
    assert results == (0,)
    assert sorted(name for (name,) in indexes) == [
        "spoolgear_jobs_by_owner",
        "spoolgear_jobs_pkey",
        "spoolgear_jobs_unique",
    ]
    assert numbers == [(7,)]
    with pytest.raises(StoreUnavailable, match="newer than this spoolgear knows"):
        PostgreSQLStore(postgres_store)
