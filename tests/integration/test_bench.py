"""The Django side-by-side bench (``bench/django_peers.py``) runs end to end on spoolgear's
own systems: what ``make bench`` prints stays true to the code. It measures, and asserts no
time: only what a run shows about durability, which is not a matter of speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT


def test_the_django_bench_runs_and_its_kill_test_tells_durable_from_not(tmp_path: Path) -> None:
    chart = tmp_path / "peers.png"
    options = ["--only", "jbox", "--scale", "0.01", "--chart", str(chart)]
    done = subprocess.run(
        [sys.executable, "bench/django_peers.py", *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    rows = {
        line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
        for line in done.stdout.splitlines()
        if line.startswith("| spoolgear")
    }
    assert set(rows) == {"spoolgear @gearman_task", "spoolgear, memory store (the floor)"}
    # Every task acknowledged before kill -9 of the broker ran after its restart (the SQLite
    # store); the memory store, killed the same way, had none left: the test can tell.
    assert rows["spoolgear @gearman_task"][-1] == "520/520"
    assert rows["spoolgear, memory store (the floor)"][-1] == "0/520"
    assert chart.stat().st_size > 0
