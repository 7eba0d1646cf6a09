"""Durability behind one contract (``base.Store``): memory (none), SQLite and spool backends,
opened here from a ``--store`` URL (the backends build on ``base``, never the other way)."""

from __future__ import annotations

import os
from pathlib import Path

from broker.errors import ConfigurationError
from broker.store.base import (
    DEFAULT_STORE_LEASE,
    DEFAULT_STORE_RETRY,
    DEFAULT_SYNC,
    PAGE_BYTES,
    MemoryStore,
    Store,
    StoredState,
)
from broker.store.spool_dir import SpoolStore
from broker.store.sqlite import SQLiteStore

__all__ = ["Store", "StoredState", "check_store_url", "default_store_url", "open_store"]


def default_data_dir() -> Path:
    """``$SPOOLGEAR_DATA_DIR``, else ``$XDG_DATA_HOME/spoolgear``, else
    ``~/.local/share/spoolgear``."""
    explicit = os.environ.get("SPOOLGEAR_DATA_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "spoolgear"


def default_store_url() -> str:
    """`sqlite:DATA_DIR/spoolgear.db`, DATA_DIR being `$SPOOLGEAR_DATA_DIR`, else
    `$XDG_DATA_HOME/spoolgear`, else `~/.local/share/spoolgear`."""
    return f"sqlite:{default_data_dir() / 'spoolgear.db'}"


POSTGRESQL_SCHEMES = ("postgresql", "postgres")


def check_store_url(url: str) -> None:
    """Reject an unknown or malformed store URL before anything starts."""
    scheme, sep, rest = url.partition(":")
    if not sep or scheme not in ("memory", "sqlite", "spool", *POSTGRESQL_SCHEMES):
        raise ConfigurationError(
            f"--store {url!r}: expected memory:, sqlite:PATH, spool:DIRECTORY or postgresql://..."
        )
    if scheme == "sqlite" and not rest:
        raise ConfigurationError(
            "--store sqlite: needs a file path, e.g. sqlite:/var/lib/spoolgear/jobs.db"
        )
    if scheme == "spool" and not rest:
        raise ConfigurationError(
            "--store spool: needs a directory, e.g. spool:/var/spool/spoolgear"
        )


def open_store(
    url: str,
    *,
    page_bytes: int = PAGE_BYTES,
    retry_seconds: float = DEFAULT_STORE_RETRY,
    lease_seconds: float = DEFAULT_STORE_LEASE,
    sync: str = DEFAULT_SYNC,
) -> Store:
    """The store a ``--store`` URL names, opened."""
    check_store_url(url)
    scheme, _, rest = url.partition(":")
    if scheme == "memory":
        return MemoryStore()
    if scheme == "spool":
        return SpoolStore(Path(rest), sync=sync)
    if scheme in POSTGRESQL_SCHEMES:
        from broker.store.postgresql import PostgreSQLStore  # psycopg only when asked for

        return PostgreSQLStore(
            url,
            page_bytes=page_bytes,
            retry_seconds=retry_seconds,
            lease_seconds=lease_seconds,
            sync=sync,
        )
    return SQLiteStore(Path(rest), page_bytes=page_bytes, sync=sync)
