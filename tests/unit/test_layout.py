"""The architecture page's layout table names every module of the tree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def test_every_module_is_named_in_the_architecture_page() -> None:
    layout = ARCHITECTURE.read_text()
    modules = [
        path
        for package in ("broker", "django_jobs")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "__init__.py" and not {"migrations", "management"} & set(path.parts)
    ]
    assert modules
    named = set(re.findall(r"[`/]([a-z_]+\.py)`", layout))
    missing = [str(p.relative_to(ROOT)) for p in modules if p.name not in named]
    assert not missing, f"modules docs/architecture.md does not name: {missing}"
