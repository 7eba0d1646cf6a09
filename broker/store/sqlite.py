"""The SQLite store: one file, WAL journal, ``synchronous=FULL``, one transaction per batch.

A batch is everything the broker changed in one event-loop turn, so a thousand
submissions cost one commit and one fsync, not a thousand (gearmand commits per
job). A file that is not a readable database is moved aside with a clear log
line and a fresh one is started; rows that cannot be decoded are skipped and
reported, so one bad record never stops the broker.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from itertools import groupby
from pathlib import Path
from typing import Any

from broker.store.base import (
    AddJob,
    AddSchedule,
    DeleteFailed,
    DeleteJob,
    DeleteSchedule,
    FailedJob,
    FailJob,
    MarkRunning,
    Operation,
    Requeue,
    ReserveHandles,
    Store,
    StoredJob,
    StoredSchedule,
    StoredState,
)

log = logging.getLogger("spoolgear.store")

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    number INTEGER PRIMARY KEY, function BLOB NOT NULL, unique_key BLOB NOT NULL,
    data BLOB NOT NULL, priority INTEGER NOT NULL, run_at REAL NOT NULL,
    reducer BLOB NOT NULL, attempts INTEGER NOT NULL, running INTEGER NOT NULL,
    seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS schedules (
    number INTEGER PRIMARY KEY, function BLOB NOT NULL, unique_key BLOB NOT NULL,
    data BLOB NOT NULL, cron TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS failed (
    number INTEGER PRIMARY KEY, function BLOB NOT NULL, unique_key BLOB NOT NULL,
    data BLOB NOT NULL, priority INTEGER NOT NULL, attempts INTEGER NOT NULL,
    error TEXT NOT NULL, failed_at REAL NOT NULL);
"""

# SQL and parameters for each operation; consecutive operations of one kind go
# through one executemany.
_WRITES: dict[type, tuple[str, Callable[[Any], tuple[Any, ...]]]] = {
    AddJob: ("INSERT OR REPLACE INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?)",
             lambda op: tuple(op.job)),
    MarkRunning: ("UPDATE jobs SET running = 1, attempts = ? WHERE number = ?",
                  lambda op: (op.attempts, op.number)),
    Requeue: ("UPDATE jobs SET running = 0, attempts = ?, seq = ? WHERE number = ?",
              lambda op: (op.attempts, op.seq, op.number)),
    DeleteJob: ("DELETE FROM jobs WHERE number = ?", lambda op: (op.number,)),
    DeleteFailed: ("DELETE FROM failed WHERE number = ?", lambda op: (op.number,)),
    AddSchedule: ("INSERT OR REPLACE INTO schedules VALUES (?,?,?,?,?)",
                  lambda op: tuple(op.schedule)),
    DeleteSchedule: ("DELETE FROM schedules WHERE number = ?", lambda op: (op.number,)),
    ReserveHandles: ("INSERT OR REPLACE INTO meta VALUES ('next_number', ?)",
                     lambda op: (op.upto,)),
}


_REAL = (int, float)
# What each column of a row must hold, in the record's field order.
_COLUMN_TYPES: dict[type, tuple[type | tuple[type, ...], ...]] = {
    StoredJob: (int, bytes, bytes, bytes, int, _REAL, bytes, int, int, int),
    StoredSchedule: (int, bytes, bytes, bytes, str),
    FailedJob: (int, bytes, bytes, bytes, int, int, str, _REAL),
}


class SQLiteStore(Store):
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

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            if db.execute("PRAGMA quick_check").fetchone() != ("ok",):
                raise sqlite3.DatabaseError("integrity check failed")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                       (SCHEMA_VERSION,))
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    def load(self) -> StoredState:
        state = StoredState()
        row = self.db.execute("SELECT value FROM meta WHERE key = 'next_number'").fetchone()
        state.next_number = int(row[0]) if row else 1
        for values in self.db.execute("SELECT * FROM jobs ORDER BY priority, seq"):
            job = self._decode(StoredJob, values, state.problems)
            if job is not None:
                state.jobs.append(job._replace(running=bool(job.running)))
        for values in self.db.execute("SELECT * FROM schedules ORDER BY number"):
            schedule = self._decode(StoredSchedule, values, state.problems)
            if schedule is not None:
                state.schedules.append(schedule)
        for values in self.db.execute("SELECT * FROM failed ORDER BY failed_at, number"):
            failed = self._decode(FailedJob, values, state.problems)
            if failed is not None:
                state.failed.append(failed)
        return state

    def _decode(self, record: Any, values: tuple[Any, ...], problems: list[str]) -> Any:
        """Build a record from a row, checking column types; report and skip a bad row."""
        for name, value, expected in zip(record._fields, values, _COLUMN_TYPES[record],
                                         strict=True):
            if not isinstance(value, expected) or (name == "priority" and value not in (0, 1, 2)):
                problems.append(f"{self.path}: skipped {record.__name__} row {values[0]!r}: "
                                f"bad {name} {value!r}")
                return None
        return record(*values)

    def write(self, batch: Sequence[Operation]) -> None:
        db = self.db
        db.execute("BEGIN")
        try:
            for kind, group in groupby(batch, type):
                if kind is FailJob:
                    for op in group:
                        assert isinstance(op, FailJob)
                        db.execute("DELETE FROM jobs WHERE number = ?", (op.failed.number,))
                        db.execute("INSERT OR REPLACE INTO failed VALUES (?,?,?,?,?,?,?,?)",
                                   tuple(op.failed))
                    continue
                sql, params = _WRITES[kind]
                db.executemany(sql, [params(op) for op in group])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()
