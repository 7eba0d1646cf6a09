"""The README's layout table names every module of the tree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _layout_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Layout")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end > 0 else None]


def test_every_module_is_named_in_the_readme_layout() -> None:
    layout = _layout_section()
    modules = [
        path
        for package in ("broker", "django_jobs")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "__init__.py" and not {"migrations", "management"} & set(path.parts)
    ]
    assert modules
    named = set(re.findall(r"[`/]([a-z_]+\.py)`", layout))
    missing = [str(p.relative_to(ROOT)) for p in modules if p.name not in named]
    assert not missing, f"modules the README's Layout section does not name: {missing}"
