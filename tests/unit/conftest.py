from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """Where a test's SQLite store lives."""
    return tmp_path / "jobs.db"
