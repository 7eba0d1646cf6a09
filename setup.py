"""Builds the broker's core and protocol codecs with mypyc where a C compiler and the
Python headers exist; anywhere else (or with SPOOLGEAR_PURE_PYTHON=1) the same modules
install as pure Python. ``broker/build.py`` tells at run time which one was loaded."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import setup

COMPILED_PACKAGES = ("broker/core", "broker/protocol")  # broker/build.py's COMPILED_PACKAGES


def compiled_sources() -> list[str]:
    """Every module of the compiled packages but their ``__init__``, which stay Python so
    that the packages import even when the compiled modules are passed over."""
    return sorted(
        str(path)
        for package in COMPILED_PACKAGES
        for path in Path(package).glob("*.py")
        if path.name != "__init__.py"
    )


def why_pure() -> str | None:
    """The reason to skip compiling, or None when everything it needs is here."""
    if os.environ.get("SPOOLGEAR_PURE_PYTHON"):
        return "SPOOLGEAR_PURE_PYTHON is set"
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

    return list(mypycify(compiled_sources(), opt_level="3", group_name="broker.compiled_core"))


setup(ext_modules=extensions())
