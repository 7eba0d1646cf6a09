"""The SQLite store: one file, WAL journal, ``synchronous=FULL`` (``NORMAL`` with
``--sync normal``), one transaction per batch.

A batch is everything the broker changed in one event-loop turn, so a thousand
submissions cost one commit and one fsync, not a thousand (gearmand commits per
job). Rows that cannot be decoded are skipped and reported, so one bad record
never stops the broker.

Acknowledged jobs are never destroyed by the broker itself:

- a store that cannot be opened or written (locked by another process, read-only,
  a directory it may not create, a second broker on the same file) refuses the
  start with the reason, and nothing is moved or deleted;
- only a file SQLite reports as not a database or corrupt is moved aside, together
  with its write-ahead log and shared-memory files (all three renamed, never
  deleted), and an empty store started, with both names in the log;
- a write that fails (disk full, I/O error), or a store file deleted or replaced
  while in use, raises ``StoreUnavailable`` with SQLite's own reason, so the broker
  stops acknowledging and exits non-zero.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from itertools import groupby
from pathlib import Path
from typing import Any

from broker.errors import StoreUnavailable
from broker.protocol.priorities import MAX_RANK, MIN_RANK
from broker.store import operations as ops
from broker.store.base import (
    DEFAULT_SYNC,
    PAGE_BYTES,
    Page,
    PagingStore,
    SpilledQueue,
    StoredState,
    flow_rules,
)

log = logging.getLogger("spoolgear.store")

SCHEMA_VERSION = 4
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    number INTEGER PRIMARY KEY, function BLOB NOT NULL, unique_key BLOB NOT NULL,
    data BLOB NOT NULL, priority INTEGER NOT NULL, run_at REAL NOT NULL,
    reducer BLOB NOT NULL, attempts INTEGER NOT NULL, running INTEGER NOT NULL,
    seq INTEGER NOT NULL, concurrency_key BLOB NOT NULL DEFAULT x'',
    after_jobs BLOB NOT NULL DEFAULT x'');
CREATE TABLE IF NOT EXISTS schedules (
    number INTEGER PRIMARY KEY, function BLOB NOT NULL, unique_key BLOB NOT NULL,
    data BLOB NOT NULL, cron TEXT NOT NULL, next_run REAL NOT NULL DEFAULT 0,
    fired INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS failed (
    number INTEGER PRIMARY KEY, function BLOB NOT NULL, unique_key BLOB NOT NULL,
    data BLOB NOT NULL, priority INTEGER NOT NULL, attempts INTEGER NOT NULL,
    error TEXT NOT NULL, failed_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    number INTEGER PRIMARY KEY, function BLOB NOT NULL, status TEXT NOT NULL,
    enqueued_at REAL NOT NULL, started_at REAL NOT NULL, last_started_at REAL NOT NULL,
    finished_at REAL NOT NULL, workers TEXT NOT NULL, errors TEXT NOT NULL,
    value BLOB NOT NULL, value_size INTEGER NOT NULL, data BLOB NOT NULL,
    data_size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS flow_rules (
    pattern BLOB PRIMARY KEY, rate INTEGER NOT NULL, per REAL NOT NULL,
    running INTEGER NOT NULL, paused INTEGER NOT NULL, per_key INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS results_finished ON results (finished_at);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (function, priority, seq);
CREATE INDEX IF NOT EXISTS jobs_unique ON jobs (unique_key) WHERE unique_key != x'';
"""

# sqlite3 adapts every parameter that is not an int, float, str or bytearray, and for
# bytes (functions, uniques, payloads) that look-up fails by raising and discarding an
# AttributeError each time; an identity adapter (the bytes type returns a bytes object
# as it is) finds it at once: about a fifth off every row written.
sqlite3.register_adapter(bytes, bytes)

# New, assigned and ended jobs, the bulk of every batch, go in multi-row statements: SQLite
# then runs one step (without the GIL) per chunk rather than one per row, and the
# writer thread stops contending with the event loop for the GIL on every row.
_ROWS_PER_STATEMENT = 256
_INSERT_JOBS = "INSERT OR REPLACE INTO jobs VALUES "
_JOB_ROW = "(?,?,?,?,?,?,?,?,?,?,?,?)"
# Most jobs have no concurrency key and run after nothing: their rows leave those two
# columns to their defaults, two fewer parameters bound per row.
_INSERT_PLAIN_JOBS = (
    "INSERT OR REPLACE INTO jobs (number, function, unique_key, data, priority, run_at,"
    " reducer, attempts, running, seq) VALUES "
)
_PLAIN_JOB_ROW = "(?,?,?,?,?,?,?,?,?,?)"
_PLAIN_FIELDS = len(ops.StoredJob._fields) - 2
_INSERT_RESULTS = "INSERT OR REPLACE INTO results VALUES "
_RESULT_ROW = "(?,?,?,?,?,?,?,?,?,?,?,?,?)"

# SQL and parameters for the other operations; consecutive operations of one kind go
# through one executemany.
_WRITES: dict[type, tuple[str, Callable[[Any], tuple[Any, ...]]]] = {
    ops.Requeue: (
        "UPDATE jobs SET running = 0, run_at = ?, attempts = ?, seq = ? WHERE number = ?",
        lambda op: (op.run_at, op.attempts, op.seq, op.number),
    ),
    ops.DeleteFailed: ("DELETE FROM failed WHERE number = ?", lambda op: (op.number,)),
    ops.SetFlowRule: (
        "INSERT OR REPLACE INTO flow_rules VALUES (?,?,?,?,?,?)",
        lambda op: tuple(op.rule),
    ),
    ops.DeleteFlowRule: (
        "DELETE FROM flow_rules WHERE pattern = ?",
        lambda op: (op.pattern,),
    ),
    ops.AddSchedule: (
        "INSERT OR REPLACE INTO schedules VALUES (?,?,?,?,?,?,?)",
        lambda op: tuple(op.schedule),
    ),
    ops.DeleteSchedule: ("DELETE FROM schedules WHERE number = ?", lambda op: (op.number,)),
    ops.ReserveHandles: (
        "INSERT OR REPLACE INTO meta VALUES ('next_number', ?)",
        lambda op: (op.upto,),
    ),
}


# What a loadable row looks like, per table (SQLite's loose typing lets anything in).
_BLOBS = "typeof(function) = 'blob' AND typeof(unique_key) = 'blob' AND typeof(data) = 'blob'"
_RANK = f"typeof(priority) = 'integer' AND priority BETWEEN {MIN_RANK} AND {MAX_RANK}"
_VALID_ROW = {
    "jobs": f"{_BLOBS} AND typeof(reducer) = 'blob' AND {_RANK}"
    " AND typeof(run_at) IN ('integer', 'real') AND typeof(attempts) = 'integer'"
    " AND running IN (0, 1) AND typeof(seq) = 'integer' AND typeof(concurrency_key) = 'blob'"
    " AND typeof(after_jobs) = 'blob'",
    "schedules": f"{_BLOBS} AND typeof(cron) = 'text'"
    " AND typeof(next_run) IN ('integer', 'real') AND typeof(fired) = 'integer'",
    "failed": f"{_BLOBS} AND {_RANK} AND typeof(attempts) = 'integer'"
    " AND typeof(error) = 'text' AND typeof(failed_at) IN ('integer', 'real')",
    "results": "typeof(function) = 'blob' AND typeof(status) = 'text'"
    " AND typeof(value) = 'blob' AND typeof(value_size) = 'integer'"
    " AND typeof(data) = 'blob' AND typeof(data_size) = 'integer'"
    " AND json_valid(workers) AND json_valid(errors)"
    " AND typeof(finished_at) IN ('integer', 'real')",
}


# A job in its queue, ready to be served (not running, not waiting for its time).
_RUNNABLE = "running = 0 AND run_at = 0"


def _job_from_row(_cursor: object, row: tuple[Any, ...]) -> ops.StoredJob:
    """SQLite hands booleans back as 0 and 1; the compiled core takes only a bool."""
    job = ops.StoredJob._make(row)
    return job._replace(running=bool(job.running))


def _result_from_row(_cursor: object, row: tuple[Any, ...]) -> ops.KeptResult:
    """Workers and errors are stored as JSON lists of strings."""
    *before, workers, errors, value, value_size, data, data_size = row
    workers, errors = tuple(json.loads(workers)), tuple(json.loads(errors))
    return ops.KeptResult._make((*before, workers, errors, value, value_size, data, data_size))


def _result_row(result: ops.KeptResult) -> tuple[Any, ...]:
    *before, workers, errors, value, value_size, data, data_size = result
    return (*before, json.dumps(workers), json.dumps(errors), value, value_size, data, data_size)


def _upgrade(db: sqlite3.Connection) -> None:
    """Schema 1 stores had no next run or firing count for schedules; schema 3 added
    the results table, schema 4 the flow rules, the jobs' concurrency keys and what
    they run after
    (``SCHEMA`` creates the tables when missing)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    if "concurrency_key" not in columns:
        db.execute("ALTER TABLE jobs ADD COLUMN concurrency_key BLOB NOT NULL DEFAULT x''")
        db.execute("ALTER TABLE jobs ADD COLUMN after_jobs BLOB NOT NULL DEFAULT x''")
    columns = {row[1] for row in db.execute("PRAGMA table_info(schedules)")}
    if "next_run" not in columns:
        db.execute("ALTER TABLE schedules ADD COLUMN next_run REAL NOT NULL DEFAULT 0")
        db.execute("ALTER TABLE schedules ADD COLUMN fired INTEGER NOT NULL DEFAULT 0")
    db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))


_ROW_FACTORIES: dict[Any, Callable[[Any, tuple[Any, ...]], Any]] = {
    ops.StoredJob: _job_from_row,
    ops.KeptResult: _result_from_row,
}


# SQLite's primary result codes that mean the file itself is damaged, not unreachable.
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
# How long opening waits for another process's transaction before giving up.
_BUSY_TIMEOUT_MS = 2000
# auto_vacuum mode 2; free pages are handed back in steps once this many pile up.
_INCREMENTAL = 2
_SHRINK_FREE_PAGES = 2048
_SHRINK_STEP_PAGES = 1024
# Only deleting rows frees pages: a batch of none of these skips the free-page check, once
# the pages freed before are given back.
_FREEING = frozenset(
    {
        ops.DeleteJob,
        ops.FailJob,
        ops.DeleteFailed,
        ops.DeleteSchedule,
        ops.DeleteFlowRule,
        ops.DropResults,
        ops.ExpireResults,
    }
)
# The write-ahead log is cut back to this size after checkpoints.
_JOURNAL_SIZE_LIMIT = 64 << 20


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


class SQLiteStore(PagingStore):
    durable = True
    lone_writes_on_loop = True

    def __init__(
        self, path: Path, *, page_bytes: int = PAGE_BYTES, sync: str = DEFAULT_SYNC
    ) -> None:
        self.path = path
        self.page_bytes = page_bytes
        self.sync = sync
        # Without fsync a commit is a write to the WAL in the page cache (SQLite fsyncs
        # only at checkpoints, every thousand pages): one sender waiting for each answer
        # got twice the rate this way, a pipelined load about a fifth more.
        self.writes_on_loop = sync == "normal"
        self._reclaiming = True
        """Free pages may be left to give back: every commit checks (``_shrink``)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = self._take_lock()
            damage = self._damage()
            if damage is not None:
                self._move_aside(damage)
            self.db = self._open()
            # Lookups from the event loop must not see the writer's open transaction.
            self.reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.reader.row_factory = _job_from_row
            self._inode = os.stat(path).st_ino
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(
                f"cannot open the store {path}: {exc}; nothing was moved or deleted"
            ) from exc

    def _take_lock(self) -> int:
        """One broker per store file: a second one would serve every job twice."""
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreUnavailable(
                f"cannot open the store {self.path}: another broker is "
                f"using it (it holds {self.path}.lock)"
            ) from None
        return fd

    def _damage(self) -> sqlite3.DatabaseError | None:
        """Why the file is not a database, if it is not: looked at read-only and as
        immutable, so SQLite touches neither it nor its write-ahead log before we know.
        Only the header and the schema are read, so a start costs the rows it loads, not
        the size of the file; damage deeper in is found when read and stops the broker
        (``StoreUnavailable``) instead."""
        if not self.path.exists():
            return None
        try:
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        except sqlite3.DatabaseError as exc:
            return exc if _damaged(exc) else None
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            return exc if _damaged(exc) else None
        finally:
            db.close()
        return None

    def _move_aside(self, exc: sqlite3.DatabaseError) -> None:
        """Keep a damaged file and its journal files for recovery, under new names."""
        stamp = int(time.time())
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        log.error(
            "store %s is damaged (%s); moved it and its -wal/-shm files to %s* and "
            "started an empty store",
            self.path,
            exc,
            aside,
        )
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.rename(f"{aside}{suffix}")

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            self._reclaim_space_from_now_on(db)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.sync.upper()}")
            db.execute(f"PRAGMA journal_size_limit={_JOURNAL_SIZE_LIMIT}")
            db.executescript(SCHEMA)
            _upgrade(db)
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _reclaim_space_from_now_on(self, db: sqlite3.Connection) -> None:
        """Incremental vacuum, so a drained queue gives its space back (``_shrink``); a
        store made before that is rewritten once (VACUUM copies only what is live)."""
        if db.execute("PRAGMA auto_vacuum").fetchone()[0] == _INCREMENTAL:
            return
        db.execute(f"PRAGMA auto_vacuum={_INCREMENTAL}")
        if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            log.warning("rewriting %s once so it can shrink as queues drain", self.path)
            db.execute("VACUUM")

    def _shrink(self) -> None:
        """Give free pages back to the file system a step at a time (after a commit that
        deleted rows, and after the next ones while enough free pages are left)."""
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        self._reclaiming = free >= _SHRINK_FREE_PAGES
        if self._reclaiming:
            # executescript steps the pragma to its end (execute frees a single page).
            self.db.executescript(f"PRAGMA incremental_vacuum({_SHRINK_STEP_PAGES});")

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    def load(self, window: int = 0) -> StoredState:
        try:
            return self._load(window)
        except sqlite3.Error as exc:
            raise StoreUnavailable(
                f"cannot read the store {self.path}: {exc}; it was left "
                "as it is (sqlite3's .recover can salvage a damaged "
                "file)"
            ) from exc

    def _load(self, window: int) -> StoredState:
        state = StoredState()
        row = self.db.execute("SELECT value FROM meta WHERE key = 'next_number'").fetchone()
        state.next_number = int(row[0]) if row else 1
        state.next_seq = (self.db.execute("SELECT max(seq) FROM jobs").fetchone()[0] or 0) + 1
        # With a window, runnable jobs come per queue from _load_windows instead.
        others = f"AND NOT ({_RUNNABLE}) " if window else ""
        state.jobs = self._valid_rows(
            "jobs", ops.StoredJob, others + "ORDER BY priority, seq", state.problems
        )
        if window:
            self._load_windows(window, state)
        state.schedules = self._valid_rows(
            "schedules", ops.StoredSchedule, "ORDER BY number", state.problems
        )
        state.failed = self._valid_rows(
            "failed", ops.FailedJob, "ORDER BY failed_at, number", state.problems
        )
        state.results = self._valid_rows(
            "results", ops.KeptResult, "ORDER BY finished_at, number", state.problems
        )
        state.flow_rules = flow_rules(
            self.db.execute("SELECT * FROM flow_rules ORDER BY pattern"), state.problems
        )
        return state

    def _load_windows(self, window: int, state: StoredState) -> None:
        """The first ``window`` runnable jobs of each queue; the rest are counted."""
        queues = self.db.execute(
            f"SELECT function, priority, count(*) FROM jobs WHERE {_VALID_ROW['jobs']}"
            f" AND {_RUNNABLE} GROUP BY function, priority"
        ).fetchall()
        for function, priority, count in queues:
            jobs = self.page(function, priority, 0, window).rows
            state.jobs.extend(jobs)
            if count > len(jobs):
                state.spilled.append(
                    SpilledQueue(function, priority, count - len(jobs), jobs[-1].seq + 1)
                )

    def page(self, function: bytes, priority: int, first_seq: int, limit: int) -> Page:
        # One row holding the whole page as JSON: fetching row by row would hand the
        # GIL back and forth with the busy event loop once per job. The running total of
        # payload sizes (length() reads a row's header, not its blob) keeps the page within
        # page_bytes, and only the chosen rows' payloads are read; one row past the limit
        # tells whether more are left.
        page, fetched = self.db.execute(
            "WITH sized AS (SELECT number, row_number() OVER (ORDER BY seq) AS n,"
            " sum(size) OVER (ORDER BY seq) - size AS before"
            " FROM (SELECT number, seq, length(data) AS size FROM jobs WHERE function = ?"
            f" AND priority = ? AND seq >= ? AND {_RUNNABLE} AND {_VALID_ROW['jobs']}"
            " ORDER BY seq LIMIT ?)),"
            " chosen AS (SELECT number FROM sized WHERE n <= ? AND (n = 1 OR before < ?))"
            " SELECT (SELECT json_group_array(json_array(number, hex(unique_key), hex(data),"
            " run_at, hex(reducer), attempts, seq, hex(concurrency_key), hex(after_jobs)))"
            " FROM jobs WHERE number IN chosen),"
            " (SELECT count(*) FROM sized)",
            (function, priority, first_seq, limit + 1, limit, self.page_bytes),
        ).fetchone()
        jobs = [
            ops.StoredJob(
                number,
                function,
                bytes.fromhex(unique),
                bytes.fromhex(data),
                priority,
                run_at,
                bytes.fromhex(reducer),
                attempts,
                False,
                seq,
                bytes.fromhex(key),
                bytes.fromhex(after),
            )
            for number, unique, data, run_at, reducer, attempts, seq, key, after in json.loads(page)
        ]
        jobs.sort(key=lambda job: job.seq)  # aggregation order is not guaranteed
        return Page(jobs, more=fetched > len(jobs))

    def find(self, number: int) -> ops.StoredJob | None:
        row: ops.StoredJob | None = self.reader.execute(
            f"SELECT * FROM jobs WHERE number = ? AND {_VALID_ROW['jobs']}", (number,)
        ).fetchone()
        return row

    def find_unique(self, unique: bytes, function: bytes | None) -> ops.StoredJob | None:
        # "unique_key != x''" lets SQLite use the partial index.
        sql = (
            f"SELECT * FROM jobs WHERE unique_key = ? AND unique_key != x''"
            f" AND {_VALID_ROW['jobs']}"
        )
        params: tuple[bytes, ...] = (unique,)
        if function is not None:
            sql += " AND function = ?"
            params += (function,)
        row: ops.StoredJob | None = self.reader.execute(
            sql + " ORDER BY seq LIMIT 1", params
        ).fetchone()
        return row

    def _valid_rows(self, table: str, record: Any, order: str, problems: list[str]) -> Any:
        """Rows whose columns hold the right types (checked by SQLite, fast enough for
        millions of rows); the others are reported by number and skipped."""
        valid = _VALID_ROW[table]
        for (number,) in self.db.execute(f"SELECT number FROM {table} WHERE NOT ({valid})"):
            problems.append(
                f"{self.path}: skipped a {table} row with bad values (number {number!r})"
            )
        cursor = self.db.execute(f"SELECT * FROM {table} WHERE ({valid}) {order}")
        cursor.row_factory = _ROW_FACTORIES.get(record, lambda _cursor, row: record._make(row))
        return cursor.fetchall()

    def write(self, batch: Sequence[ops.Operation]) -> None:
        db = self.db
        try:
            db.execute("BEGIN")
            freed = False
            try:
                for kind, group in groupby(ops.compact(batch), type):
                    self._apply(kind, list(group))
                    freed = freed or kind in _FREEING
                started = time.perf_counter()
                db.execute("COMMIT")
                self.sync_seconds = time.perf_counter() - started
            except BaseException:
                if db.in_transaction:  # a failed COMMIT may have rolled back already
                    db.execute("ROLLBACK")
                raise
            if freed or self._reclaiming:
                self._shrink()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"writing to the store {self.path} failed: {exc}") from exc
        self._check_file()

    def _check_file(self) -> None:
        """A store deleted or replaced under us takes every later commit with it."""
        try:
            inode = os.stat(self.path).st_ino
        except OSError as exc:
            raise StoreUnavailable(
                f"the store {self.path} is gone ({exc.strerror}): it was "
                "deleted while in use, so nothing written now would "
                "survive a restart"
            ) from None
        if inode != self._inode:
            raise StoreUnavailable(
                f"the store {self.path} was replaced by another file while in use"
            )

    def _apply(self, kind: type, group: list[Any]) -> None:
        """A run of operations of one kind; the frequent ones as multi-row statements."""
        if kind is ops.AddJob:
            jobs = [op.job for op in group]
            if any(job.key or job.after for job in jobs):
                self._insert_rows(_INSERT_JOBS, _JOB_ROW, [tuple(job) for job in jobs])
            else:
                plain = [tuple(job)[:_PLAIN_FIELDS] for job in jobs]
                self._insert_rows(_INSERT_PLAIN_JOBS, _PLAIN_JOB_ROW, plain)
        elif kind is ops.KeepResult:
            self._insert_rows(
                _INSERT_RESULTS, _RESULT_ROW, [_result_row(op.result) for op in group]
            )
        elif kind is ops.DropResults:
            self._by_numbers("DELETE FROM results", [n for op in group for n in op.numbers])
        elif kind is ops.ExpireResults:
            before = max(op.before for op in group)
            self.db.execute("DELETE FROM results WHERE finished_at <= ?", (before,))
        elif kind is ops.MarkRunning:
            self._by_numbers("UPDATE jobs SET running = 1", [op.number for op in group])
        elif kind is ops.DeleteJob:
            self._by_numbers("DELETE FROM jobs", [op.number for op in group])
        elif kind is ops.FailJob:
            for op in group:
                self.db.execute("DELETE FROM jobs WHERE number = ?", (op.failed.number,))
                self.db.execute(
                    "INSERT OR REPLACE INTO failed VALUES (?,?,?,?,?,?,?,?)", tuple(op.failed)
                )
        else:
            sql, params = _WRITES[kind]
            self.db.executemany(sql, [params(op) for op in group])

    def _insert_rows(self, insert: str, placeholders: str, rows: list[tuple[Any, ...]]) -> None:
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[start : start + _ROWS_PER_STATEMENT]
            self.db.execute(
                insert + ",".join([placeholders] * len(chunk)),
                [value for row in chunk for value in row],
            )

    def _by_numbers(self, statement: str, numbers: list[int]) -> None:
        """``statement WHERE number IN (...)`` over ``numbers``, a chunk at a time."""
        for start in range(0, len(numbers), _ROWS_PER_STATEMENT):
            chunk = numbers[start : start + _ROWS_PER_STATEMENT]
            self.db.execute(f"{statement} WHERE number IN ({','.join('?' * len(chunk))})", chunk)

    def close(self) -> None:
        self.reader.close()
        self.db.close()
        if self._lock >= 0:
            os.close(self._lock)  # releases the store for the next broker
            self._lock = -1
