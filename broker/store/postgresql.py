"""The PostgreSQL store: the jobs, schedules and failed list of one or several brokers in
one database, one transaction per batch, pages read with a running size total.

psycopg 3 does the talking: connection strings and the libpq environment variables
(``PGHOST``, ``PGPASSWORD``...) work as PostgreSQL users expect, and ``executemany`` runs
in pipeline mode, so a batch of a thousand jobs is one round trip per statement kind, not
one per job. Each broker sees only the jobs it owns; leases, adoption and fencing are in
``pg_leases.py``, the tables in ``pg_schema.py``.

When the database goes away (a restart, a failover, a network cut) a write reconnects
with backoff and replays its batch (every operation is idempotent, so a batch whose
COMMIT went through before the connection dropped is harmless to repeat) for up to
``retry_seconds``; the replies that wait for that batch are held meanwhile, never sent
for a batch that is not stored. Past that the write fails and the broker stops.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from itertools import groupby
from typing import Any, TypeVar

import psycopg

from broker.errors import StoreUnavailable
from broker.store import operations as ops
from broker.store.base import (
    DEFAULT_STORE_LEASE,
    DEFAULT_STORE_RETRY,
    DEFAULT_SYNC,
    PAGE_BYTES,
    BrokerRow,
    Claimed,
    Page,
    SharedStore,
    SpilledQueue,
    StoredState,
    flow_rules,
)
from broker.store.pg_leases import CENSUS, JOB_COLUMNS, SCHEDULE_COLUMNS, Lease
from broker.store.pg_listen import JobListener
from broker.store.pg_schema import described, migrate, plain_row

log = logging.getLogger("spoolgear.store")

T = TypeVar("T")

CLAIM_BATCH = 1000
"""Jobs one sweep takes over at most (the next sweep follows at once while more are left)."""
_FIRST_BACKOFF, _MAX_BACKOFF = 0.1, 5.0

_RUNNABLE = "NOT running AND run_at = 0"
_FAILED_LIST = "SELECT * FROM spoolgear_failed ORDER BY failed_at, number"

# A kept result's fields, then the broker that kept it.
_RESULT_PLACES = ",".join(["%s"] * (len(ops.KeptResult._fields) + 1))

_WRITES: dict[type, tuple[str, Callable[[Any, int], tuple[Any, ...]]]] = {
    ops.MarkRunning: (
        "UPDATE spoolgear_jobs SET running = true WHERE number = %s",
        lambda op, owner: (op.number,),
    ),
    ops.Requeue: (
        "UPDATE spoolgear_jobs SET running = false, run_at = %s, attempts = %s, seq = %s"
        " WHERE number = %s",
        lambda op, owner: (op.run_at, op.attempts, op.seq, op.number),
    ),
    ops.DeleteJob: (
        "DELETE FROM spoolgear_jobs WHERE number = %s",
        lambda op, owner: (op.number,),
    ),
    ops.DeleteFailed: (
        "DELETE FROM spoolgear_failed WHERE number = %s",
        lambda op, owner: (op.number,),
    ),
    ops.AddSchedule: (
        f"INSERT INTO spoolgear_schedules ({SCHEDULE_COLUMNS}, owner)"
        " VALUES (%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (number) DO UPDATE SET"
        " data = EXCLUDED.data, cron = EXCLUDED.cron, next_run = EXCLUDED.next_run,"
        " fired = EXCLUDED.fired",
        lambda op, owner: (*op.schedule, owner),
    ),
    ops.DeleteSchedule: (
        "DELETE FROM spoolgear_schedules WHERE number = %s",
        lambda op, owner: (op.number,),
    ),
    ops.KeepResult: (
        f"INSERT INTO spoolgear_results VALUES ({_RESULT_PLACES}) ON CONFLICT (number) DO NOTHING",
        lambda op, owner: (
            *op.result._replace(workers=list(op.result.workers), errors=list(op.result.errors)),
            owner,
        ),
    ),
    ops.DropResults: (
        "DELETE FROM spoolgear_results WHERE number = ANY(%s)",
        lambda op, owner: (list(op.numbers),),
    ),
    ops.ExpireResults: (
        "DELETE FROM spoolgear_results WHERE finished_at <= %s",
        lambda op, owner: (op.before,),
    ),
    ops.SetFlowRule: (
        "INSERT INTO spoolgear_flow_rules VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (pattern) DO"
        " UPDATE SET rate = EXCLUDED.rate, per = EXCLUDED.per, running = EXCLUDED.running,"
        " paused = EXCLUDED.paused, per_key = EXCLUDED.per_key",
        lambda op, owner: tuple(op.rule),
    ),
    ops.DeleteFlowRule: (
        "DELETE FROM spoolgear_flow_rules WHERE pattern = %s",
        lambda op, owner: (op.pattern,),
    ),
}

_RESULT_COLUMNS = (
    "number, function, status, enqueued_at, started_at, last_started_at, finished_at,"
    " workers, errors, value, value_size, data, data_size"
)


_INCOMING = (
    "CREATE TEMP TABLE IF NOT EXISTS spoolgear_incoming (LIKE spoolgear_jobs) ON COMMIT DELETE ROWS"
)
"""Where a batch's new jobs go first when some of them are in the table already, to be
moved in by one statement that skips those (``_add_jobs_but_known``)."""
_COPIED_TYPES = (
    "int8",
    "bytea",
    "bytea",
    "bytea",
    "int4",
    "float8",
    "bytea",
    "int4",
    "bool",
    "int8",
    "bytea",
    "bytea",
    "int8",
)
"""A job row's column types, for the binary COPY: payloads travel as they are instead of
as hex text PostgreSQL parses back."""


def copy_job_rows(cursor: psycopg.Cursor[Any], table: str, rows: Iterable[tuple[Any, ...]]) -> None:
    """Write job rows (a ``StoredJob`` and its owner) by one binary COPY; also what
    ``bench/postgresql.py`` times as PostgreSQL's own floor."""
    with cursor.copy(f"COPY {table} ({JOB_COLUMNS}, owner) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(_COPIED_TYPES)
        for row in rows:
            copy.write_row(row)


_ADD_INCOMING = (
    "INSERT INTO spoolgear_jobs SELECT * FROM spoolgear_incoming ON CONFLICT DO NOTHING"
    " RETURNING number"
)
_NOT_INDEXED = (b"", b"-")
"""Uniques the store's coalescing index leaves out: none, and "match the payload"."""


class PostgreSQLStore(SharedStore):
    durable = True

    def __init__(
        self,
        url: str,
        *,
        page_bytes: int = PAGE_BYTES,
        retry_seconds: float = DEFAULT_STORE_RETRY,
        lease_seconds: float = DEFAULT_STORE_LEASE,
        sync: str = DEFAULT_SYNC,
    ) -> None:
        self.url = url
        # full keeps the server's setting (a DBA's remote_apply for synchronous replicas,
        # say); normal turns it off for the broker's own writes.
        self.asynchronous_commit = sync == "normal"
        self.page_bytes = page_bytes
        self.retry_seconds = retry_seconds
        self.lease = Lease(lease_seconds)
        self.sweep_seconds = min(1.0, lease_seconds / 4)
        self._listener: JobListener | None = None
        self.coalesced: dict[int, int] = {}
        try:
            with psycopg.connect(url) as setup:
                migrate(setup)
            self.db = self._connect_writer()
            self.reader = psycopg.connect(url, autocommit=True)
            with self.db.transaction():
                self.lease.register(self.db, f"{socket.gethostname()} pid {os.getpid()}")
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"cannot open the store {described(url)}: {_one_line(exc)}"
            ) from exc

    def _connect_writer(self) -> psycopg.Connection[Any]:
        """The writer's connection, with the table new jobs are copied into. A transaction
        it leaves open (the broker was paused mid-write) is ended by the server after a
        lease, so that its lease row lock does not keep other brokers from taking over."""
        db = psycopg.connect(self.url)
        with db.transaction():
            db.execute(
                "SELECT set_config('idle_in_transaction_session_timeout', %s, false)",
                (f"{int(self.lease.seconds * 1000)}ms",),
            )
            if self.asynchronous_commit:
                db.execute("SET synchronous_commit = off")
            db.execute(_INCOMING)
        return db

    def describe(self) -> str:
        return described(self.url)

    def lease_valid_until(self) -> float:
        return self.lease.valid_until

    def listen(self, wake: Callable[[], None]) -> None:
        self._listener = JobListener(self.url, wake)

    # ------------------------------------------------------------------ reading

    def load(self, window: int = 0) -> StoredState:
        """What brokers that stopped left (taken over first), in this broker's order."""
        try:
            with self.db.transaction():
                self.lease.claim(self.db, None)
            with self.db.transaction():
                return self._load(window)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot read the store {self.describe()}: {exc}") from exc

    def _load(self, window: int) -> StoredState:
        state = StoredState()
        state.next_number = self.lease.first_number + 1
        mine = (self.lease.broker_id,)
        top = self.db.execute("SELECT max(seq) FROM spoolgear_jobs WHERE owner = %s", mine)
        last = top.fetchone()
        state.next_seq = (last[0] if last and last[0] is not None else 0) + 1
        others = f"AND NOT ({_RUNNABLE}) " if window else ""
        state.jobs = self._rows(
            f"SELECT {JOB_COLUMNS} FROM spoolgear_jobs WHERE owner = %s {others}"
            "ORDER BY priority, seq",
            ops.StoredJob,
            mine,
        )
        if window:
            for function, priority, count in self.db.execute(
                f"SELECT function, priority, count(*) FROM spoolgear_jobs WHERE owner = %s"
                f" AND {_RUNNABLE} GROUP BY function, priority ORDER BY priority",
                mine,
            ).fetchall():
                jobs, _ = self._page_rows(bytes(function), priority, 0, window)
                state.jobs.extend(jobs)
                if count > len(jobs):
                    state.spilled.append(
                        SpilledQueue(bytes(function), priority, count - len(jobs), jobs[-1].seq + 1)
                    )
        state.schedules = self._rows(
            f"SELECT {SCHEDULE_COLUMNS} FROM spoolgear_schedules WHERE owner = %s ORDER BY number",
            ops.StoredSchedule,
            mine,
        )
        state.failed = self._rows(_FAILED_LIST, ops.FailedJob)
        rules = self.db.execute("SELECT * FROM spoolgear_flow_rules ORDER BY pattern")
        state.flow_rules = flow_rules(rules.fetchall(), state.problems)
        return state

    def _rows(self, sql: str, record: Any, params: Sequence[Any] = ()) -> list[Any]:
        return [record._make(plain_row(row)) for row in self.db.execute(sql, params).fetchall()]

    def page(self, function: bytes, priority: int, first_seq: int, limit: int) -> Page:
        jobs, counted = self._retrying(lambda: self._page(function, priority, first_seq, limit))
        return Page(jobs, more=counted > len(jobs))

    def _page(
        self, function: bytes, priority: int, first_seq: int, limit: int
    ) -> tuple[list[ops.StoredJob], int]:
        with self.db.transaction():
            return self._page_rows(function, priority, first_seq, limit)

    def _page_rows(
        self, function: bytes, priority: int, first_seq: int, limit: int
    ) -> tuple[list[ops.StoredJob], int]:
        """The page's jobs and how many rows (up to ``limit + 1``) the queue had. A
        running total of payload sizes keeps the page within page_bytes (a larger job
        comes alone); one row past the limit, counted, tells whether more are left."""
        rows = self.db.execute(
            f"WITH sized AS (SELECT {JOB_COLUMNS}, row_number() OVER (ORDER BY seq) AS n,"
            " sum(octet_length(data)) OVER (ORDER BY seq) - octet_length(data) AS before"
            " FROM spoolgear_jobs WHERE owner = %s AND function = %s AND priority = %s"
            f" AND seq >= %s AND {_RUNNABLE} ORDER BY seq LIMIT %s)"
            f" SELECT {JOB_COLUMNS}, (SELECT count(*) FROM sized) FROM sized"
            " WHERE n = 1 OR (n <= %s AND before < %s) ORDER BY seq",
            (
                self.lease.broker_id,
                function,
                priority,
                first_seq,
                limit + 1,
                limit,
                self.page_bytes,
            ),
        ).fetchall()
        jobs = [ops.StoredJob._make(plain_row(row[:-1])) for row in rows]
        return jobs, rows[0][-1] if rows else 0

    def find(self, number: int) -> ops.StoredJob | None:
        return self._look_up(
            f"SELECT {JOB_COLUMNS} FROM spoolgear_jobs WHERE number = %s AND owner = %s",
            (number, self.lease.broker_id),
        )

    def find_unique(self, unique: bytes, function: bytes | None) -> ops.StoredJob | None:
        sql = f"SELECT {JOB_COLUMNS} FROM spoolgear_jobs WHERE unique_key = %s AND owner = %s"
        params: tuple[Any, ...] = (unique, self.lease.broker_id)
        if function is not None:
            sql += " AND function = %s"
            params += (function,)
        return self._look_up(sql + " ORDER BY seq LIMIT 1", params)

    def find_elsewhere(self, number: int) -> ops.StoredJob | None:
        return self._look_up(
            f"SELECT {JOB_COLUMNS} FROM spoolgear_jobs WHERE number = %s"
            " AND owner IS DISTINCT FROM %s",
            (number, self.lease.broker_id),
        )

    def find_result(self, number: int) -> ops.KeptResult | None:
        rows = self._read(
            f"SELECT {_RESULT_COLUMNS} FROM spoolgear_results WHERE number = %s", (number,)
        )
        if not rows:
            return None
        result = ops.KeptResult._make(plain_row(rows[0]))
        return result._replace(workers=tuple(result.workers), errors=tuple(result.errors))

    def schedule_holder(self, function: bytes, unique: bytes) -> str | None:
        rows = self._read(
            "SELECT b.id, b.name FROM spoolgear_schedules s JOIN spoolgear_brokers b"
            " ON b.id = s.owner WHERE s.function = %s AND s.unique_key = %s AND s.owner != %s"
            " LIMIT 1",
            (function, unique, self.lease.broker_id),
        )
        return f"id {rows[0][0]} ({rows[0][1]})" if rows else None

    def _look_up(self, sql: str, params: Sequence[Any]) -> ops.StoredJob | None:
        rows = self._read(sql, params)
        return ops.StoredJob._make(plain_row(rows[0])) if rows else None

    def _read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        """Rows read on the event loop: a lost connection is reopened once (a wait for
        the database to come back would stall every client), else the caller gets
        ``StoreUnavailable``."""
        try:
            return self.reader.execute(sql, params).fetchall()
        except psycopg.OperationalError:
            pass
        try:
            self.reader.close()
            self.reader = psycopg.connect(self.url, autocommit=True)
            return self.reader.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot read the store {self.describe()}: {exc}") from exc

    def failed_jobs(self) -> list[ops.FailedJob]:
        return [ops.FailedJob._make(plain_row(row)) for row in self._read(_FAILED_LIST)]

    def brokers(self) -> list[BrokerRow]:
        return [
            BrokerRow(number, name, state, jobs, running)
            for number, name, state, jobs, running in self._read(
                CENSUS, {"me": self.lease.broker_id}
            )
        ]

    # ------------------------------------------------------------------ writing

    def write(self, batch: Sequence[ops.Operation]) -> None:
        compacted = ops.compact(batch)
        self._retrying(lambda: self._write(compacted))

    def _write(self, batch: list[ops.Operation]) -> None:
        self.coalesced = {}
        with self.db.transaction(), self.db.cursor() as cursor:
            self.lease.renew(self.db)
            for kind, group in groupby(batch, type):
                self._apply(cursor, kind, list(group))
            started = time.perf_counter()  # the COMMIT, when the block ends
        self.sync_seconds = time.perf_counter() - started

    def _apply(self, cursor: psycopg.Cursor[Any], kind: type, group: list[Any]) -> None:
        """A run of operations of one kind, one pipelined ``executemany`` for most."""
        if kind is ops.ReserveHandles:
            if group[-1].upto > self.lease.numbers_end:
                raise StoreUnavailable(
                    "this broker run has given out its 2^40 job handles; restart it to"
                    " get a fresh range"
                )
            return  # numbers come from the broker's id: nothing to store
        if kind is ops.AddJob:
            self._add_jobs(cursor, group)
            return
        if kind is ops.FailJob:
            failed = [tuple(op.failed) for op in group]
            cursor.executemany(
                "DELETE FROM spoolgear_jobs WHERE number = %s", [(row[0],) for row in failed]
            )
            cursor.executemany(
                "INSERT INTO spoolgear_failed VALUES (%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (number) DO NOTHING",
                failed,
            )
            return
        sql, params = _WRITES[kind]
        owner = self.lease.broker_id
        cursor.executemany(sql, [params(op, owner) for op in group])

    def _add_jobs(self, cursor: psycopg.Cursor[Any], group: list[ops.AddJob]) -> None:
        """New jobs, copied straight into the table under a savepoint: COPY is about twice
        the rows per second of pipelined INSERTs, and straight in (no ON CONFLICT, no
        table between) half again (bench/RESULTS.md). When a row is there already, the
        savepoint undoes the copy and the batch's jobs go through ``_add_jobs_but_known``."""
        try:
            with self.db.transaction():  # a savepoint: a conflict undoes only the copy
                self._copy(cursor, "spoolgear_jobs", group)
        except psycopg.errors.UniqueViolation:
            self._add_jobs_but_known(cursor, group)

    def _add_jobs_but_known(self, cursor: psycopg.Cursor[Any], group: list[ops.AddJob]) -> None:
        """New jobs, copied in aside, then moved in skipping those already there. A job not
        added was either there already (a batch written again after a lost connection) or
        has a unique a job of its function already has (another broker's, or an
        application's): it coalesces onto that one."""
        self._copy(cursor, "spoolgear_incoming", group)
        added = {row[0] for row in cursor.execute(_ADD_INCOMING).fetchall()}
        for op in group:
            job = op.job
            if job.number in added or job.unique in _NOT_INDEXED:
                continue
            row = cursor.execute(
                "SELECT number FROM spoolgear_jobs WHERE function = %s AND unique_key = %s",
                (job.function, job.unique),
            ).fetchone()
            if row is not None and row[0] != job.number:  # else a replayed batch's own row
                self.coalesced[job.number] = row[0]

    def _copy(self, cursor: psycopg.Cursor[Any], table: str, group: list[ops.AddJob]) -> None:
        owner = self.lease.broker_id
        copy_job_rows(cursor, table, ((*op.job, owner) for op in group))

    def sweep(self) -> Claimed:
        return self._retrying(self._sweep)

    def _sweep(self) -> Claimed:
        with self.db.transaction():
            self.lease.renew(self.db)
            if time.monotonic() < self.lease.claims_from:
                return Claimed()
            return self.lease.claim(self.db, CLAIM_BATCH)

    def _retrying(self, action: Callable[[], T]) -> T:
        """``action`` on the writer's connection, reconnecting with backoff while the
        database is unreachable, for ``retry_seconds`` at most. The start and the end of
        an outage are logged as errors (the default log level shows them)."""
        started = time.monotonic()
        backoff = _FIRST_BACKOFF
        while True:
            try:
                result = action()
            except psycopg.OperationalError as exc:
                reason = _one_line(exc)
                if time.monotonic() + backoff > started + self.retry_seconds:
                    raise StoreUnavailable(
                        f"the store {self.describe()} has been unreachable for"
                        f" {self.retry_seconds:g} s (--store-retry): {reason}"
                    ) from exc
                level = logging.ERROR if backoff == _FIRST_BACKOFF else logging.WARNING
                log.log(
                    level,
                    "the store %s is unreachable, retrying for up to %g s: %s",
                    self.describe(),
                    self.retry_seconds,
                    reason,
                )
            except psycopg.Error as exc:
                raise StoreUnavailable(f"the store {self.describe()} failed: {exc}") from exc
            else:
                if backoff != _FIRST_BACKOFF:
                    log.error(
                        "the store %s is reachable again after %.1f s",
                        self.describe(),
                        time.monotonic() - started,
                    )
                return result
            time.sleep(backoff)
            # Never sleep past a quarter lease: once the database is back every broker
            # reconnects and renews well within the lease others wait before a takeover.
            backoff = min(backoff * 2, _MAX_BACKOFF, self.lease.seconds / 4)
            self._reconnect()

    def _reconnect(self) -> None:
        self.db.close()
        with suppress(psycopg.OperationalError):  # the next attempt reports it
            self.db = self._connect_writer()
            self.lease.postpone_claims()

    def close(self) -> None:
        """Release the lease (what is left is taken over at once), then the connections;
        over a connection known lost there is nothing to release through."""
        if self._listener is not None:
            self._listener.stop()
        if not self.db.broken:
            with suppress(psycopg.Error), self.db.transaction():
                self.lease.release(self.db)
        self.reader.close()
        self.db.close()


def _one_line(exc: Exception) -> str:
    """libpq's error messages span lines; logs and refusals want one."""
    return " ".join(str(exc).split())
