"""The SQLite store: one file, WAL journal, ``synchronous=FULL``, one transaction per batch.

A batch is everything the broker changed in one event-loop turn, so a thousand
submissions cost one commit and one fsync, not a thousand (gearmand commits per
job). A file that is not a readable database is moved aside with a clear log
line and a fresh one is started; rows that cannot be decoded are skipped and
reported, so one bad record never stops the broker.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from itertools import groupby
from pathlib import Path
from typing import Any

from broker.core.model import MAX_RANK, MIN_RANK
from broker.store import operations as ops
from broker.store.base import PagingStore, SpilledQueue, StoredState

log = logging.getLogger("spoolgear.store")

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    number INTEGER PRIMARY KEY, function BLOB NOT NULL, unique_key BLOB NOT NULL,
    data BLOB NOT NULL, priority INTEGER NOT NULL, run_at REAL NOT NULL,
    reducer BLOB NOT NULL, attempts INTEGER NOT NULL, running INTEGER NOT NULL,
    seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS schedules (
    number INTEGER PRIMARY KEY, function BLOB NOT NULL, unique_key BLOB NOT NULL,
    data BLOB NOT NULL, cron TEXT NOT NULL, next_run REAL NOT NULL DEFAULT 0,
    fired INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS failed (
    number INTEGER PRIMARY KEY, function BLOB NOT NULL, unique_key BLOB NOT NULL,
    data BLOB NOT NULL, priority INTEGER NOT NULL, attempts INTEGER NOT NULL,
    error TEXT NOT NULL, failed_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (function, priority, seq);
CREATE INDEX IF NOT EXISTS jobs_unique ON jobs (unique_key) WHERE unique_key != x'';
"""

# New, assigned and ended jobs, the bulk of every batch, go in multi-row statements: SQLite
# then runs one step (without the GIL) per chunk rather than one per row, and the
# writer thread stops contending with the event loop for the GIL on every row.
_ROWS_PER_STATEMENT = 256
_INSERT_JOBS = "INSERT OR REPLACE INTO jobs VALUES "
_JOB_ROW = "(?,?,?,?,?,?,?,?,?,?)"

# SQL and parameters for the other operations; consecutive operations of one kind go
# through one executemany.
_WRITES: dict[type, tuple[str, Callable[[Any], tuple[Any, ...]]]] = {
    ops.Requeue: ("UPDATE jobs SET running = 0, run_at = 0, attempts = ?, seq = ?"
                  " WHERE number = ?",
              lambda op: (op.attempts, op.seq, op.number)),
    ops.DeleteFailed: ("DELETE FROM failed WHERE number = ?", lambda op: (op.number,)),
    ops.AddSchedule: ("INSERT OR REPLACE INTO schedules VALUES (?,?,?,?,?,?,?)",
                  lambda op: tuple(op.schedule)),
    ops.DeleteSchedule: ("DELETE FROM schedules WHERE number = ?", lambda op: (op.number,)),
    ops.ReserveHandles: ("INSERT OR REPLACE INTO meta VALUES ('next_number', ?)",
                     lambda op: (op.upto,)),
}


# What a loadable row looks like, per table (SQLite's loose typing lets anything in).
_BLOBS = "typeof(function) = 'blob' AND typeof(unique_key) = 'blob' AND typeof(data) = 'blob'"
_RANK = f"typeof(priority) = 'integer' AND priority BETWEEN {MIN_RANK} AND {MAX_RANK}"
_VALID_ROW = {
    "jobs": f"{_BLOBS} AND typeof(reducer) = 'blob' AND {_RANK}"
            " AND typeof(run_at) IN ('integer', 'real') AND typeof(attempts) = 'integer'"
            " AND running IN (0, 1) AND typeof(seq) = 'integer'",
    "schedules": f"{_BLOBS} AND typeof(cron) = 'text'"
                 " AND typeof(next_run) IN ('integer', 'real') AND typeof(fired) = 'integer'",
    "failed": f"{_BLOBS} AND {_RANK} AND typeof(attempts) = 'integer'"
              " AND typeof(error) = 'text' AND typeof(failed_at) IN ('integer', 'real')",
}


# A job in its queue, ready to be served (not running, not waiting for its time).
_RUNNABLE = "running = 0 AND run_at = 0"


def _upgrade(db: sqlite3.Connection) -> None:
    """Schema 1 stores had no next run or firing count for schedules."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(schedules)")}
    if "next_run" not in columns:
        db.execute("ALTER TABLE schedules ADD COLUMN next_run REAL NOT NULL DEFAULT 0")
        db.execute("ALTER TABLE schedules ADD COLUMN fired INTEGER NOT NULL DEFAULT 0")
    db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))


class SQLiteStore(PagingStore):
    durable = True

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = self._open()
        except sqlite3.DatabaseError as exc:
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            log.error("store %s is not a usable SQLite database (%s); moved it to %s and "
                      "started an empty store", path, exc, aside)
            path.rename(aside)
            for suffix in ("-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            self.db = self._open()
        # Lookups from the event loop must not see the writer's open transaction.
        self.reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.reader.row_factory = lambda _cursor, row: ops.StoredJob._make(row)

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            if db.execute("PRAGMA quick_check").fetchone() != ("ok",):
                raise sqlite3.DatabaseError("integrity check failed")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            _upgrade(db)
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    def load(self, window: int = 0) -> StoredState:
        state = StoredState()
        row = self.db.execute("SELECT value FROM meta WHERE key = 'next_number'").fetchone()
        state.next_number = int(row[0]) if row else 1
        state.next_seq = (self.db.execute("SELECT max(seq) FROM jobs").fetchone()[0] or 0) + 1
        # With a window, runnable jobs come per queue from _load_windows instead.
        others = f"AND NOT ({_RUNNABLE}) " if window else ""
        state.jobs = self._valid_rows("jobs", ops.StoredJob, others + "ORDER BY priority, seq",
                                      state.problems)
        if window:
            self._load_windows(window, state)
        state.schedules = self._valid_rows("schedules", ops.StoredSchedule, "ORDER BY number",
                                           state.problems)
        state.failed = self._valid_rows("failed", ops.FailedJob, "ORDER BY failed_at, number",
                                        state.problems)
        return state

    def _load_windows(self, window: int, state: StoredState) -> None:
        """The first ``window`` runnable jobs of each queue; the rest are counted."""
        queues = self.db.execute(
            f"SELECT function, priority, count(*) FROM jobs WHERE {_VALID_ROW['jobs']}"
            f" AND {_RUNNABLE} GROUP BY function, priority").fetchall()
        for function, priority, count in queues:
            jobs = self.page(function, priority, 0, window)
            state.jobs.extend(jobs)
            if count > len(jobs):
                state.spilled.append(SpilledQueue(function, priority, count - len(jobs),
                                                  jobs[-1].seq + 1))

    def page(self, function: bytes, priority: int, first_seq: int,
             limit: int) -> list[ops.StoredJob]:
        # One row holding the whole page as JSON: fetching row by row would hand the
        # GIL back and forth with the busy event loop once per job.
        (page,) = self.db.execute(
            "SELECT json_group_array(json_array(number, hex(unique_key), hex(data), run_at,"
            " hex(reducer), attempts, seq)) FROM (SELECT * FROM jobs WHERE function = ?"
            f" AND priority = ? AND seq >= ? AND {_RUNNABLE} AND {_VALID_ROW['jobs']}"
            " ORDER BY seq LIMIT ?)", (function, priority, first_seq, limit)).fetchone()
        jobs = [ops.StoredJob(number, function, bytes.fromhex(unique), bytes.fromhex(data),
                              priority, run_at, bytes.fromhex(reducer), attempts, False, seq)
                for number, unique, data, run_at, reducer, attempts, seq in json.loads(page)]
        jobs.sort(key=lambda job: job.seq)  # aggregation order is not guaranteed
        return jobs

    def find(self, number: int) -> ops.StoredJob | None:
        row: ops.StoredJob | None = self.reader.execute(
            f"SELECT * FROM jobs WHERE number = ? AND {_VALID_ROW['jobs']}",
            (number,)).fetchone()
        return row

    def find_unique(self, unique: bytes, function: bytes | None) -> ops.StoredJob | None:
        # "unique_key != x''" lets SQLite use the partial index.
        sql = (f"SELECT * FROM jobs WHERE unique_key = ? AND unique_key != x''"
               f" AND {_VALID_ROW['jobs']}")
        params: tuple[bytes, ...] = (unique,)
        if function is not None:
            sql += " AND function = ?"
            params += (function,)
        row: ops.StoredJob | None = self.reader.execute(sql + " ORDER BY seq LIMIT 1",
                                                        params).fetchone()
        return row

    def _valid_rows(self, table: str, record: Any, order: str, problems: list[str]) -> Any:
        """Rows whose columns hold the right types (checked by SQLite, fast enough for
        millions of rows); the others are reported by number and skipped."""
        valid = _VALID_ROW[table]
        for number, in self.db.execute(f"SELECT number FROM {table} WHERE NOT ({valid})"):
            problems.append(f"{self.path}: skipped a {table} row with bad values "
                            f"(number {number!r})")
        cursor = self.db.execute(f"SELECT * FROM {table} WHERE ({valid}) {order}")
        cursor.row_factory = lambda _cursor, row: record._make(row)
        return cursor.fetchall()

    def write(self, batch: Sequence[ops.Operation]) -> None:
        db = self.db
        db.execute("BEGIN")
        try:
            for kind, group in groupby(ops.compact(batch), type):
                self._apply(kind, list(group))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _apply(self, kind: type, group: list[Any]) -> None:
        """A run of operations of one kind; the frequent ones as multi-row statements."""
        if kind is ops.AddJob:
            self._insert_jobs([tuple(op.job) for op in group])
        elif kind is ops.MarkRunning:
            self._by_numbers("UPDATE jobs SET running = 1", [op.number for op in group])
        elif kind is ops.DeleteJob:
            self._by_numbers("DELETE FROM jobs", [op.number for op in group])
        elif kind is ops.FailJob:
            for op in group:
                self.db.execute("DELETE FROM jobs WHERE number = ?", (op.failed.number,))
                self.db.execute("INSERT OR REPLACE INTO failed VALUES (?,?,?,?,?,?,?,?)",
                                tuple(op.failed))
        else:
            sql, params = _WRITES[kind]
            self.db.executemany(sql, [params(op) for op in group])

    def _insert_jobs(self, rows: list[tuple[Any, ...]]) -> None:
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[start:start + _ROWS_PER_STATEMENT]
            self.db.execute(_INSERT_JOBS + ",".join([_JOB_ROW] * len(chunk)),
                            [value for row in chunk for value in row])

    def _by_numbers(self, statement: str, numbers: list[int]) -> None:
        """``statement WHERE number IN (...)`` over ``numbers``, a chunk at a time."""
        for start in range(0, len(numbers), _ROWS_PER_STATEMENT):
            chunk = numbers[start:start + _ROWS_PER_STATEMENT]
            self.db.execute(f"{statement} WHERE number IN ({','.join('?' * len(chunk))})",
                            chunk)

    def close(self) -> None:
        self.reader.close()
        self.db.close()
