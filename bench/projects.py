"""The benchmarks' Django projects, run as a user runs them: ``manage.py`` in a process of
its own, with the environment that picks the settings."""

from __future__ import annotations

import subprocess
from pathlib import Path


def manage(python: str, site: Path, environment: dict[str, str], *args: str) -> str:
    """``manage.py ARGS`` of the project in ``site``; its output, or its errors raised."""
    done = subprocess.run(
        [python, "manage.py", *args],
        cwd=site,
        env=environment,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout
