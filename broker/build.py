"""Which build of the core runs: compiled by mypyc, or pure Python.

``setup.py`` compiles ``broker.core`` and ``broker.protocol`` where a C compiler exists;
a compiled module wins the import over its ``.py`` twin. Pure Python runs instead when
SPOOLGEAR_PURE_PYTHON is set (for tracebacks with line numbers, or to compare), and when
a source is newer than the compiled library, so an edit is never silently ignored: the
banner and ``spoolgear --version`` say which build runs and why.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

COMPILED_PACKAGES = ("broker.core", "broker.protocol")
PURE_PYTHON_VARIABLE = "SPOOLGEAR_PURE_PYTHON"
# mypyc puts the compiled code of every module in this one library, named after the group;
# each module's own extension is a small stub that loads it.
GROUP = "broker.compiled_core"
LIBRARY = GROUP.rpartition(".")[2] + "__mypyc"
_EXTENSION = importlib.machinery.EXTENSION_SUFFIXES[0]
# A source written within this many seconds of its compiled module is the one it was
# built from: installers unpack a wheel's files in any order.
_SAME_BUILD_SECONDS = 2.0


class _SourcesOnly(importlib.abc.MetaPathFinder):
    """Finds the modules of the compiled packages from their ``.py`` files only."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if path is None or fullname.rpartition(".")[0] not in COMPILED_PACKAGES:
            return None
        loader = (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES)
        return importlib.machinery.FileFinder(path[0], loader).find_spec(fullname, target)


def compiled_sources(root: Path) -> list[Path]:
    """The modules ``setup.py`` compiles under the source tree ``root``: every module of
    the compiled packages but their ``__init__``, which stay Python so that the packages
    import even when the compiled modules are passed over."""
    return [
        source
        for name in COMPILED_PACKAGES
        for source in sorted(root.joinpath(*name.split(".")).glob("*.py"))
        if source.name != "__init__.py"
    ]


def _why_pure() -> str | None:
    """Why the compiled modules are passed over, or None when they run."""
    if os.environ.get(PURE_PYTHON_VARIABLE):
        return f"{PURE_PYTHON_VARIABLE} is set"
    sources = compiled_sources(Path(__file__).resolve().parent.parent)
    library = Path(__file__).with_name(LIBRARY + _EXTENSION)
    if not library.exists():
        return "not compiled"
    built = library.stat().st_mtime + _SAME_BUILD_SECONDS
    for source in sources:
        if not source.with_name(source.stem + _EXTENSION).exists():
            return f"{source.name} was never compiled; run make"
        if source.stat().st_mtime > built:
            return f"{source.name} changed since the build; run make"
    return None


# Decided once, on the first import of ``broker``, before any compiled package is imported.
_WHY_PURE = _why_pure()
if _WHY_PURE not in (None, "not compiled"):
    sys.meta_path.insert(0, _SourcesOnly())
COMPILED = _WHY_PURE is None
DESCRIPTION = "compiled core (mypyc)" if COMPILED else f"pure Python core ({_WHY_PURE})"
