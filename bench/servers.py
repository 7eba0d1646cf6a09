"""The servers the benchmarks start: gearmand 1.1.20 and spoolgear, each on a free port,
and the memory a process holds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ports import free_port, wait_for_port

from broker.banner import Banner, read_banner
from broker.build import PURE_PYTHON_VARIABLE

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def gearmand(*options: str) -> Iterator[tuple[int, int]]:
    binary = shutil.which("gearmand")
    if binary is None:
        raise SystemExit("gearmand is not installed: run `make peers` (as root) first")
    port = free_port()
    process = subprocess.Popen(
        [binary, "-p", str(port), "-L", "127.0.0.1", "-t", "1", "--log-file=none", *options]
    )
    try:
        wait_for_port(port)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait()


@contextmanager
def spoolgear(
    store: str = "memory:", *options: str, metrics: bool = False, pure: bool = False
) -> Iterator[tuple[int, int]]:
    """A broker; with ``metrics``, serving them and scraped every second meanwhile; with
    ``pure``, on the pure-Python core even where the compiled one is built."""
    if metrics:
        options = (*options, "--metrics-listen", "0")
    environment = {**os.environ, PURE_PYTHON_VARIABLE: "1"} if pure else None
    process, bound = start_spoolgear(store, *options, environment=environment)
    port = int(bound.gearman.rsplit(":", 1)[1])
    stop = threading.Event()
    if metrics:
        threading.Thread(target=scrape_every_second, args=(bound.first("metrics"), stop)).start()
    try:
        yield port, process.pid
    finally:
        stop.set()
        process.terminate()
        process.wait()


def start_spoolgear(
    store: str, *options: str, environment: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], Banner]:
    """``spoolgear serve`` on a free port; the process, and what its banner says it bound."""
    process = subprocess.Popen(
        [sys.executable, "-m", "broker.cli", "serve", "--port", "0", "--store", store, *options],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    )
    assert process.stdout is not None
    return process, read_banner(process.stdout.readline())


def scrape_every_second(address: str, stop: threading.Event) -> None:
    """What a Prometheus server does to a broker, until ``stop``."""
    while not stop.wait(1.0):
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
            response.read()


def rss(pid: int, field: str = "VmRSS") -> int:
    """Resident memory of ``pid`` in bytes (``VmHWM``: its peak so far)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time ``pid`` has used so far (``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
