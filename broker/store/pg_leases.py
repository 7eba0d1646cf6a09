"""Several brokers on one PostgreSQL database: leases, adoption and fencing.

Each broker registers a row in ``spoolgear_brokers`` and renews its lease in every write
transaction (and on a timer when idle). The jobs and schedules it stores carry its id as
``owner``. A broker whose lease has run out is taken over by whichever broker looks first:
under a row lock it marks the lease dead (``-infinity``) and moves the jobs and schedules
to itself. The renewal at the start of each write takes the same row lock and fails on a
dead lease, so a broker that was only paused (SIGSTOP, a partition) and comes back writes
nothing more (fencing): it learns it lost its lease and stops.

A lease that ran out but was not taken over yet can still be renewed: after a database
outage every broker's lease has run out, and each waits one lease before it takes over
anything, so the brokers that reconnected renew theirs and none is taken over needlessly.

Job and schedule numbers (the handles' digits) are the broker's id shifted left by
``NUMBER_BITS`` plus a count (``broker/transactional.py``). Jobs without an owner were
written by an application in its own transaction; they are taken over like a stopped
broker's.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg

from broker.errors import StoreUnavailable
from broker.store.base import Claimed
from broker.store.operations import StoredJob, StoredSchedule
from broker.store.pg_schema import plain_row
from broker.transactional import NUMBER_BITS

log = logging.getLogger("spoolgear.store")

LOCAL_SHARE = 0.9
"""Of a renewed lease, the part this broker trusts its own clock for: past it, jobs are
handed out only once a write has renewed the lease (the database's clock decides)."""

JOB_COLUMNS = (
    "number, function, unique_key, data, priority, run_at, reducer, attempts, running, seq,"
    " concurrency_key, after_jobs"
)
SCHEDULE_COLUMNS = "number, function, unique_key, data, cron, next_run, fired"


CENSUS = (
    "SELECT * FROM (SELECT b.id, b.name, CASE WHEN b.id = %(me)s THEN 'this broker'"
    " WHEN b.lease_until = '-infinity' THEN 'stopped'"
    " WHEN b.lease_until < clock_timestamp() THEN 'lease ran out' ELSE 'live' END,"
    " count(j.number), count(j.number) FILTER (WHERE j.running)"
    " FROM spoolgear_brokers b LEFT JOIN spoolgear_jobs j ON j.owner = b.id GROUP BY b.id"
    " UNION ALL SELECT 0, 'written by applications', 'waiting', count(*), 0"
    " FROM spoolgear_jobs WHERE owner IS NULL) AS brokers"
    " ORDER BY id = 0, id != %(me)s, id"
)
"""Each broker (this one first) with the jobs it owns, then the jobs applications wrote
that no broker took over yet (as broker 0)."""


class LeaseLost(StoreUnavailable):
    """Another broker took over this broker's jobs: it must not write or hand out more."""


class Lease:
    """This broker's lease: its id, how long a renewal lasts, and until when (on the
    monotonic clock) it trusts the lease without renewing."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.broker_id = 0
        self.valid_until = 0.0
        self.claims_from = 0.0
        """Monotonic time before which nothing is taken over (one lease after connecting)."""

    @property
    def first_number(self) -> int:
        return self.broker_id << NUMBER_BITS

    @property
    def numbers_end(self) -> int:
        return (self.broker_id + 1) << NUMBER_BITS

    def register(self, db: psycopg.Connection[Any], name: str) -> None:
        """A new broker row with a fresh lease (in the caller's transaction)."""
        started = time.monotonic()
        row = db.execute(
            "INSERT INTO spoolgear_brokers (name, lease_until)"
            " VALUES (%s, clock_timestamp() + make_interval(secs => %s)) RETURNING id",
            (name, self.seconds),
        ).fetchone()
        assert row is not None
        self.broker_id = int(row[0])
        self.valid_until = started + self.seconds * LOCAL_SHARE

    def renew(self, db: psycopg.Connection[Any]) -> None:
        """Extend the lease, holding its row lock to the end of the caller's transaction;
        ``LeaseLost`` if another broker took it over."""
        started = time.monotonic()
        row = db.execute(
            "UPDATE spoolgear_brokers SET lease_until = clock_timestamp()"
            " + make_interval(secs => %s) WHERE id = %s AND lease_until > '-infinity'"
            " RETURNING id",
            (self.seconds, self.broker_id),
        ).fetchone()
        if row is None:
            raise LeaseLost(
                f"this broker (id {self.broker_id}) lost its lease on the store: it went"
                f" longer than --store-lease {self.seconds:g} s without renewing it (paused,"
                " or cut off from the database) and another broker took over its jobs;"
                " it stops without writing anything more"
            )
        self.valid_until = started + self.seconds * LOCAL_SHARE

    def release(self, db: psycopg.Connection[Any]) -> None:
        """At a clean stop: the lease ends now, so another broker takes over at once."""
        db.execute(
            "UPDATE spoolgear_brokers SET lease_until = '-infinity' WHERE id = %s",
            (self.broker_id,),
        )

    def postpone_claims(self) -> None:
        """After (re)connecting: let the other brokers renew before taking any over."""
        self.claims_from = time.monotonic() + self.seconds

    def claim(self, db: psycopg.Connection[Any], limit: int | None) -> Claimed:
        """In the caller's transaction: mark the leases that ran out dead and take over up
        to ``limit`` (``None``: all) of their jobs and unowned ones, and their schedules."""
        dead = db.execute(
            "SELECT id, name, lease_until = '-infinity' FROM spoolgear_brokers"
            " WHERE id != %s AND lease_until < clock_timestamp() FOR UPDATE SKIP LOCKED",
            (self.broker_id,),
        ).fetchall()
        newly = [(number, name) for number, name, was_dead in dead if not was_dead]
        for number, name in newly:
            log.error("broker %d (%s) let its lease run out: taking over its jobs", number, name)
        if newly:
            db.execute(
                "UPDATE spoolgear_brokers SET lease_until = '-infinity' WHERE id = ANY(%s)",
                ([number for number, _ in newly],),
            )
        gone = [number for number, _, _ in dead]
        claimed = Claimed()
        claimed.jobs = [
            StoredJob._make(plain_row(row))
            for row in db.execute(
                f"UPDATE spoolgear_jobs SET owner = %s WHERE number IN (SELECT number FROM"
                " spoolgear_jobs WHERE owner = ANY(%s) OR owner IS NULL ORDER BY priority,"
                f" seq LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING {JOB_COLUMNS}",
                (self.broker_id, gone, limit),
            ).fetchall()
        ]
        claimed.jobs.sort(key=lambda job: (job.priority, job.seq))
        claimed.more = limit is not None and len(claimed.jobs) == limit
        claimed.schedules = [
            StoredSchedule._make(plain_row(row))
            for row in db.execute(
                "UPDATE spoolgear_schedules SET owner = %s WHERE owner = ANY(%s)"
                f" RETURNING {SCHEDULE_COLUMNS}",
                (self.broker_id, gone),
            ).fetchall()
        ]
        if gone and not claimed.more:
            db.execute(
                "DELETE FROM spoolgear_brokers b WHERE id = ANY(%s) AND NOT EXISTS"
                " (SELECT 1 FROM spoolgear_jobs WHERE owner = b.id)",
                (gone,),
            )
        return claimed
