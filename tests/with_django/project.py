"""Running the test project's management commands as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from broker.admin import AdminClient
from tests.helpers import ROOT, wait_until

PROJECT = ROOT / "tests" / "django_project"


def manage_env(servers: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "GEARMAN_SERVERS": servers, **extra}


def manage(servers: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        text=True,
        capture_output=True,
        env=manage_env(servers, **env),
        timeout=60,
    )


def registered(server: str, pid: int) -> tuple[str, ...] | None:
    """The functions the worker process ``pid`` registered on ``server``, None if not there."""
    with AdminClient(server) as admin:
        for worker in admin.workers():
            if f":{pid}:" in worker.client_id:
                return worker.functions
    return None


class WorkerProcess:
    """A running ``manage.py gearman_worker``; its stdout and stderr go to a file."""

    def __init__(self, process: subprocess.Popen[str], output: IO[str]) -> None:
        self.process = process
        self.pid = process.pid
        self._output = output
        self._final_output: str | None = None

    def output(self) -> str:
        """What the process has written so far (all of it once the context has ended)."""
        if self._final_output is not None:
            return self._final_output
        self._output.seek(0)
        return self._output.read()

    def wait(self, timeout: float = 20.0) -> int:
        return self.process.wait(timeout)


@contextmanager
def gearman_worker(
    server: str, *args: str, watched_on: str | None = None, **env: str
) -> Iterator[WorkerProcess]:
    """``manage.py gearman_worker ARGS`` running and registered on ``server`` (seen through
    ``watched_on``, a plaintext port of the same broker, when ``server`` is a TLS one)."""
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "gearman_worker", *args],
            cwd=PROJECT,
            text=True,
            stdout=output,
            stderr=output,
            env=manage_env(server, **env),
        )
        worker = WorkerProcess(process, output)
        try:
            deadline = time.monotonic() + 20
            while not registered(watched_on or server, process.pid):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"worker did not register: {worker.output()}")
                time.sleep(0.05)
            yield worker
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            worker._final_output = worker.output()


def wait_for_file(path: Path, timeout: float = 20.0) -> None:
    wait_until(path.exists, timeout)


def parse_tables(text: str) -> list[list[dict[str, str]]]:
    """prettytable output back to rows: one list of {column: cell} per table."""
    tables = []
    for block in text.strip().split("\n\n"):
        lines = [line for line in block.splitlines() if line.startswith("|")]
        header, *rows = ([cell.strip() for cell in line.strip("|").split("|")] for line in lines)
        tables.append([dict(zip(header, row, strict=True)) for row in rows])
    return tables
