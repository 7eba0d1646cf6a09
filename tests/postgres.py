"""A throwaway PostgreSQL cluster from Debian's ``postgresql`` package, for the store's
tests: ``initdb`` in a fresh directory, ``pg_ctl start`` on a free port (as the
``postgres`` user when the tests run as root, since PostgreSQL refuses root)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import IN_CI, free_port


def postgres_binaries() -> Path | None:
    """Where Debian's newest PostgreSQL keeps ``initdb`` and ``pg_ctl``, if installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _binaries() -> Path:
    binaries = postgres_binaries()
    if binaries is None:
        message = "test peer PostgreSQL is not installed (make peers installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return binaries


@dataclass
class Cluster:
    """A throwaway cluster: its connection string, and stop/start for outage tests."""

    directory: Path
    port: int
    as_postgres: list[str]

    @property
    def url(self) -> str:
        return f"postgresql://spoolgear@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        subprocess.run([*self.as_postgres, *command], check=True, capture_output=True, timeout=120)

    def _pg_ctl(self, *arguments: str) -> None:
        self._run(str(_binaries() / "pg_ctl"), "-D", str(self.directory / "data"), *arguments)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        self._pg_ctl("-o", options, "-l", f"{self.directory}/log", "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast`` disconnects clients and shuts down cleanly; ``immediate`` is a crash."""
        self._pg_ctl("-m", mode, "-w", "stop")


@contextmanager
def run_postgres() -> Iterator[Cluster]:
    """A running cluster (trust auth, user ``spoolgear``), removed afterwards."""
    binaries = _binaries()
    directory = Path(tempfile.mkdtemp(prefix="spoolgear-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    cluster = Cluster(directory, free_port(), as_postgres)
    cluster._run(
        str(binaries / "initdb"),
        *("-D", str(directory / "data"), "-A", "trust", "-U", "spoolgear", "--no-sync"),
    )
    cluster.start()
    try:
        yield cluster
    finally:
        with suppress(subprocess.CalledProcessError):  # a test may have stopped it
            cluster.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)


def fresh_database(url: str, name: str) -> str:
    """A new, empty database in the cluster at ``url``; its connection string."""
    import psycopg

    database = "t_" + "".join(c if c.isalnum() else "_" for c in name.lower())[:50]
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{database}"')
        connection.execute(f'CREATE DATABASE "{database}"')
    return url.rsplit("/", 1)[0] + "/" + database
