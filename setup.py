"""Builds the broker's core and protocol codecs with mypyc where a C compiler and the
Python headers exist; anywhere else (or with SPOOLGEAR_PURE_PYTHON=1) the same modules
install as pure Python. ``broker/build.py`` tells at run time which one was loaded."""

from __future__ import annotations

import os
import runpy
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import setup

# What is compiled, and the library it goes into, as broker/build.py (which decides at run
# time which core runs) knows them; run as a file, not imported: the package is not built yet.
HERE = Path(__file__).resolve().parent
BUILD = runpy.run_path(str(HERE / "broker" / "build.py"))
PURE_PYTHON_VARIABLE = BUILD["PURE_PYTHON_VARIABLE"]


def why_pure() -> str | None:
    """The reason to skip compiling, or None when everything it needs is here."""
    if os.environ.get(PURE_PYTHON_VARIABLE):
        return f"{PURE_PYTHON_VARIABLE} is set"
    if not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        return "the Python headers (Python.h) are missing"
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler}) on PATH"
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypyc (part of mypy) is not installed"
    return None


def extensions() -> list[object]:
    reason = why_pure()
    if reason is not None:
        print(f"spoolgear: installing pure Python, {reason}", file=sys.stderr)
        return []
    from mypyc.build import mypycify

    sources = [str(path.relative_to(HERE)) for path in BUILD["compiled_sources"](HERE)]
    return list(mypycify(sources, opt_level="3", group_name=BUILD["GROUP"]))


setup(ext_modules=extensions())
