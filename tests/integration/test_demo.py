"""`make demo` runs examples/quickstart.py: it must work end to end."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def test_quickstart_demo_runs_every_job() -> None:
    result = subprocess.run([sys.executable, "examples/quickstart.py"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "result: thumb-of-portrait.jpg.png" in result.stdout
    assert "in this order: holiday.jpg, portrait.jpg, scheduled.jpg" in result.stdout
    assert "progress 4/4" in result.stdout
