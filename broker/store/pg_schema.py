"""The PostgreSQL store's tables: created and migrated in order, the version kept in
``spoolgear_meta``, under an advisory lock so that brokers starting together migrate once.

A database whose schema is newer than this spoolgear knows is refused rather than used:
an older broker would not know what the newer columns mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from broker import transactional
from broker.errors import StoreUnavailable

_V1 = f"""
CREATE TABLE spoolgear_brokers (
    id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL,
    started TIMESTAMPTZ NOT NULL DEFAULT now(), lease_until TIMESTAMPTZ NOT NULL);
CREATE TABLE spoolgear_jobs (
    number BIGINT PRIMARY KEY, function BYTEA NOT NULL, unique_key BYTEA NOT NULL,
    data BYTEA NOT NULL, priority INTEGER NOT NULL, run_at DOUBLE PRECISION NOT NULL,
    reducer BYTEA NOT NULL, attempts INTEGER NOT NULL, running BOOLEAN NOT NULL,
    seq BIGINT NOT NULL, owner BIGINT);
CREATE TABLE spoolgear_schedules (
    number BIGINT PRIMARY KEY, function BYTEA NOT NULL, unique_key BYTEA NOT NULL,
    data BYTEA NOT NULL, cron TEXT NOT NULL, next_run DOUBLE PRECISION NOT NULL,
    fired INTEGER NOT NULL, owner BIGINT);
CREATE TABLE spoolgear_failed (
    number BIGINT PRIMARY KEY, function BYTEA NOT NULL, unique_key BYTEA NOT NULL,
    data BYTEA NOT NULL, priority INTEGER NOT NULL, attempts INTEGER NOT NULL,
    error TEXT NOT NULL, failed_at DOUBLE PRECISION NOT NULL);
CREATE INDEX spoolgear_jobs_queue ON spoolgear_jobs (owner, function, priority, seq)
    WHERE NOT running AND run_at = 0;
CREATE INDEX spoolgear_jobs_owner ON spoolgear_jobs (owner, priority, seq);
CREATE UNIQUE INDEX spoolgear_jobs_unique ON spoolgear_jobs (unique_key, function)
    WHERE unique_key NOT IN ('', '-');
CREATE INDEX spoolgear_schedules_owner ON spoolgear_schedules (owner);
CREATE SEQUENCE {transactional.NUMBERS} MAXVALUE {(1 << transactional.NUMBER_BITS) - 1};
"""

_V2 = """
DROP INDEX spoolgear_jobs_owner;
DROP INDEX spoolgear_jobs_queue;
CREATE INDEX spoolgear_jobs_by_owner ON spoolgear_jobs (owner, function, priority, seq);
"""
"""One index of a broker's jobs instead of two: each index costs every new row an insert
(with one fewer PostgreSQL took a tenth to a fifth more rows a second, bench/RESULTS.md),
and this one serves both the queue's pages (the runnable filter skips the few running or
delayed rows) and the look-ups by owner alone (its first column). Not partial, so setting
``running`` changes no indexed column and PostgreSQL may update the row in place."""

_V3 = """
CREATE TABLE spoolgear_results (
    number BIGINT PRIMARY KEY, function BYTEA NOT NULL, status TEXT NOT NULL,
    enqueued_at DOUBLE PRECISION NOT NULL, started_at DOUBLE PRECISION NOT NULL,
    last_started_at DOUBLE PRECISION NOT NULL, finished_at DOUBLE PRECISION NOT NULL,
    workers TEXT[] NOT NULL, errors TEXT[] NOT NULL, value BYTEA NOT NULL,
    value_size BIGINT NOT NULL, data BYTEA NOT NULL, data_size BIGINT NOT NULL, owner BIGINT);
CREATE INDEX spoolgear_results_finished ON spoolgear_results (finished_at);
"""
"""Kept results of ended background jobs (``--keep-results``): any broker of the store
answers for any job's, so they live here rather than with the broker that ran it."""

_V4 = """
CREATE TABLE spoolgear_flow_rules (
    pattern BYTEA PRIMARY KEY, rate BIGINT NOT NULL, per DOUBLE PRECISION NOT NULL,
    running BIGINT NOT NULL, paused BOOLEAN NOT NULL, per_key BIGINT NOT NULL);
ALTER TABLE spoolgear_jobs ADD COLUMN concurrency_key BYTEA NOT NULL DEFAULT '';
ALTER TABLE spoolgear_jobs ADD COLUMN after_jobs BYTEA NOT NULL DEFAULT '';
"""
"""Flow rules (rate limits, running limits, paused queues), one table for every broker of
the store: each enforces them for the jobs it hands out, and reads them when it starts;
each job's concurrency key, for the rules' per-key limits; and the jobs it runs after."""

MIGRATIONS = (_V1, _V2, _V3, _V4)
"""Step ``n`` takes the schema from version ``n`` to ``n + 1``; append, never edit."""

_MIGRATION_LOCK = 0x73706F6F6C  # an advisory lock key of spoolgear's own ("spool")


def migrate(db: psycopg.Connection[Any]) -> None:
    """Bring the database's tables to the newest version, in one transaction."""
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        db.execute(
            "CREATE TABLE IF NOT EXISTS spoolgear_meta"
            " (key TEXT PRIMARY KEY, value BIGINT NOT NULL)"
        )
        row = db.execute("SELECT value FROM spoolgear_meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > len(MIGRATIONS):
            raise StoreUnavailable(
                f"the store's schema is version {version}, newer than this spoolgear knows"
                f" ({len(MIGRATIONS)}): upgrade spoolgear"
            )
        for step in MIGRATIONS[version:]:
            db.execute(step)
        db.execute(
            "INSERT INTO spoolgear_meta VALUES ('schema_version', %s)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (len(MIGRATIONS),),
        )


def described(url: str) -> str:
    """The connection as a URL without its password, for logs and the banner."""
    parts = conninfo_to_dict(url)
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


def plain_row(row: Sequence[Any]) -> tuple[Any, ...]:
    """psycopg hands BYTEA back as bytes already; memoryview from some paths is copied."""
    return tuple(bytes(value) if isinstance(value, memoryview) else value for value in row)
