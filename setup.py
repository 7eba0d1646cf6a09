"""Builds spoolgear, compiling the broker's core and protocol codecs with mypyc where it can.

Compiling is a speed-up, never a condition of installing: without a C compiler, the Python
headers or mypyc, with SPOOLGEAR_PURE_PYTHON=1, or when any step of the compile fails, the
same modules install as pure Python and one line on stderr says why. Nothing is compiled for
an sdist. A compiled wheel is platform-tagged, a pure one ``py3-none-any``.
``broker/build.py`` tells at run time which one was loaded.
"""

from __future__ import annotations

import functools
import os
import runpy
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

# What is compiled, and the library it goes into, as broker/build.py (which decides at run
# time which core runs) knows them; run as a file, not imported: the package is not built yet.
HERE = Path(__file__).resolve().parent
BUILD = runpy.run_path(str(HERE / "broker" / "build.py"))
PURE_PYTHON_VARIABLE = BUILD["PURE_PYTHON_VARIABLE"]
# mypyc type-checks what it compiles, but a user's install is not the place for the project's
# strict lint (`make lint`): no config file, and the optional extras (psycopg) need not be
# importable in the build environment.
MYPYC_OPTIONS = ["--config-file=", "--ignore-missing-imports", "--follow-imports=silent"]
# Commands that make an sdist or metadata, never a build.
METADATA_ONLY = {"sdist", "egg_info", "dist_info"}


def say_pure(reason: str) -> None:
    print(f"spoolgear: installing the pure Python core, {reason}", file=sys.stderr)


def why_pure() -> str | None:
    """The reason not to try compiling, or None when everything it needs is here."""
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


@functools.cache
def mypyc_extensions() -> list[Extension]:
    """mypyc's type check and C sources, made once however often the build asks."""
    from mypyc.build import mypycify

    sources = [str(path.relative_to(HERE)) for path in BUILD["compiled_sources"](HERE)]
    return list(mypycify([*MYPYC_OPTIONS, *sources], opt_level="3", group_name=BUILD["GROUP"]))


class CompileCore(build_ext):
    """Compiles the core when extensions are built (a wheel, an install), not when an sdist
    or metadata is made; any failure leaves the pure-Python modules and says why."""

    compiled = False
    failure = ""

    def finalize_options(self) -> None:
        # An sdist and the metadata steps ask build_ext for its sources only: mypyc's
        # generated C is not shipped, so nothing is type-checked or generated for them.
        if set(self.distribution.commands) <= METADATA_ONLY:
            super().finalize_options()
            return
        try:
            self.distribution.ext_modules = mypyc_extensions()
        except (Exception, SystemExit) as error:  # mypyc reports its failures by SystemExit
            self.distribution.ext_modules = []
            self.failure = str(error).strip() or type(error).__name__
        super().finalize_options()

    def run(self) -> None:
        if self.failure:
            say_pure(f"mypyc failed: {self.failure}")
            return
        try:
            super().run()
        except (Exception, SystemExit) as error:
            self._remove_partial_outputs()
            self.extensions = []
            say_pure(f"compiling failed: {str(error).strip() or type(error).__name__}")
            return
        self.compiled = True

    def _remove_partial_outputs(self) -> None:
        """A stub module without its library would shadow its ``.py`` twin and not import."""
        for output in self.get_outputs():
            Path(output).unlink(missing_ok=True)


class SayPurePython(build_py):
    """Says, when the modules are built (not for an sdist), why nothing is compiled."""

    reason = ""

    def run(self) -> None:
        say_pure(self.reason)
        super().run()


class TagByOutcome(bdist_wheel):
    """A wheel is platform-tagged only when the core was compiled into it."""

    def get_tag(self) -> tuple[str, str, str]:
        self.root_is_pure = not self.get_finalized_command("build_ext").compiled
        return super().get_tag()


def build_options() -> dict[str, Any]:
    reason = why_pure()
    if reason is not None:
        SayPurePython.reason = reason
        return {"cmdclass": {"build_py": SayPurePython}}
    # A stand-in for the library mypyc will produce: it makes the build run build_ext (and
    # tag the wheel for this platform); CompileCore puts mypyc's extensions in its place.
    stand_in = Extension(BUILD["GROUP"] + "__mypyc", sources=[])
    return {
        "ext_modules": [stand_in],
        "cmdclass": {"build_ext": CompileCore, "bdist_wheel": TagByOutcome},
    }


setup(**build_options())
