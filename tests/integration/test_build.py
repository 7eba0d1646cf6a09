"""The compiled core: built by ``make``, run by the broker, passed over when asked to or
when a source changed after the build, and said so wherever an operator looks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from broker import build
from tests.helpers import IN_CI, ROOT, SPOOLGEAR, run_broker

WHICH_FILES = (
    "import broker.build, broker.core.broker, broker.protocol.reader;"
    "print(broker.build.DESCRIPTION);"
    "print(broker.core.broker.__file__);"
    "print(broker.protocol.reader.__file__)"
)


def require_compiled() -> None:
    if build.COMPILED:
        return
    message = f"this run has the {build.DESCRIPTION} (make compiles it)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def loaded(*, source_root: Path = ROOT, pure: bool = False) -> list[str]:
    """What a fresh interpreter importing ``broker`` from ``source_root`` reports."""
    environment = {**os.environ, "PYTHONPATH": str(source_root)}
    environment.pop(build.PURE_PYTHON_VARIABLE, None)
    if pure:
        environment[build.PURE_PYTHON_VARIABLE] = "1"
    answer = subprocess.run(
        [sys.executable, "-c", WHICH_FILES],
        cwd=source_root,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return answer.stdout.splitlines()


def test_the_broker_runs_the_compiled_core_and_says_so() -> None:
    require_compiled()
    version = subprocess.run(
        [*SPOOLGEAR, "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert "compiled core (mypyc)" in version
    with run_broker("--store", "memory:") as broker:
        assert "core=compiled" in broker.listening.split()
    description, core, reader = loaded()
    assert description == "compiled core (mypyc)"
    assert core.endswith(".so") and reader.endswith(".so")


def test_the_pure_python_core_runs_when_asked_for() -> None:
    require_compiled()
    description, core, reader = loaded(pure=True)
    assert description == f"pure Python core ({build.PURE_PYTHON_VARIABLE} is set)"
    assert core.endswith("broker.py") and reader.endswith("reader.py")
    environment = {**os.environ, build.PURE_PYTHON_VARIABLE: "1"}
    with run_broker("--store", "memory:", env=environment) as broker:
        assert "core=python" in broker.listening.split()


def test_a_source_changed_after_the_build_is_never_silently_ignored(tmp_path: Path) -> None:
    """An edit to one module makes the whole core pure Python (compiled modules call each
    other directly, so half and half cannot be mixed) and names the module."""
    require_compiled()
    shutil.copytree(ROOT / "broker", tmp_path / "broker", ignore=shutil.ignore_patterns("*.pyc"))
    edited = tmp_path / "broker" / "core" / "queries.py"
    later = time.time() + 60
    os.utime(edited, (later, later))
    description, core, reader = loaded(source_root=tmp_path)
    assert description == "pure Python core (queries.py changed since the build; run make)"
    assert core == str(tmp_path / "broker" / "core" / "broker.py")
    assert reader == str(tmp_path / "broker" / "protocol" / "reader.py")
