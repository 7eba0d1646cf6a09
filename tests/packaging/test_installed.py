"""``pip install`` as users run it: the sdist and wheels ``python -m build`` makes, and the
source tree, installed into clean venvs without the test extras, then checked by
``smoke.py`` from a directory outside the checkout (the installed package only).

The builds and installs fetch from the package index (the build's own requirements, the
extras), as a user's do; each variant is one test, so a packaging break names itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT

SMOKE = Path(__file__).with_name("smoke.py")
COMPILED = "compiled core"
PURE = "pure Python core"
# No compiler at all: the build finds none and says so.
NO_COMPILER = {"CC": "/nonexistent/cc"}
# A compiler that fails every compile: mypyc's C reaches it and the build falls back.
FAILING_COMPILER = {"CC": "false"}
INSTALL_TIMEOUT = 900
# Files a user's install must have besides the modules; one missing fails the build test.
PACKAGE_DATA = (
    "django_jobs/templates/admin/django_jobs/dashboard.html",
    "django_jobs/migrations/0001_initial.py",
)
SDIST_FILES = ("LICENSE", "CHANGELOG.md", "README.md", "setup.py", "pyproject.toml")

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT)


def run(
    *command: str | Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``command``, failing the test with its output when it fails."""
    answer = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
    )
    assert answer.returncode == 0, f"{command} failed:\n{answer.stdout}\n{answer.stderr}"
    return answer


def clean_environment() -> dict[str, str]:
    """Our variables that would change what is built or imported, unset."""
    return {"SPOOLGEAR_PURE_PYTHON": "", "PYTHONPATH": ""}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files a fresh clone has (tracked, or new and not ignored), without what ``make``
    compiled in place."""
    tree = tmp_path_factory.mktemp("source") / "spoolgear"
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    return tree


@pytest.fixture(scope="module")
def dists(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build``: the sdist, and the wheel built from it."""
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, source, cwd=source, env=clean_environment())
    return out


def only(directory: Path, pattern: str) -> Path:
    [found] = directory.glob(pattern)
    return found


@pytest.fixture
def venv(tmp_path: Path) -> Iterator[Path]:
    """A clean venv's interpreter; nothing of the checkout on its path."""
    run(sys.executable, "-m", "venv", tmp_path / "venv", cwd=tmp_path)
    yield tmp_path / "venv" / "bin" / "python"


def pip_install(python: Path, *what: str | Path, env: dict[str, str] | None = None) -> str:
    """What the build said (``-v`` shows it, as it does to a user who asks)."""
    answer = run(
        python,
        "-m",
        "pip",
        "install",
        "-v",
        *what,
        cwd=python.parent,
        env={**clean_environment(), **(env or {})},
    )
    return answer.stdout + answer.stderr


def smoke(python: Path, core: str, *options: str) -> None:
    outside = python.parent.parent.parent
    script = outside / "smoke.py"
    shutil.copy(SMOKE, script)
    answer = run(
        python, script, core, "--checkout", ROOT, *options, cwd=outside, env=clean_environment()
    )
    assert "smoke: ok" in answer.stdout


def wheel_tag(wheel: Path) -> str:
    return wheel.name.removesuffix(".whl").split("-", 2)[2]


def check_wheel(wheel: Path) -> None:
    # W004: Django names migrations 0001_initial.py, which is not an importable module name.
    run(
        sys.executable,
        "-m",
        "check_wheel_contents",
        "--ignore",
        "W004",
        "--toplevel",
        "broker,django_jobs",
        wheel,
        cwd=wheel.parent,
    )
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert set(PACKAGE_DATA) <= names, f"missing from {wheel.name}: {set(PACKAGE_DATA) - names}"


def test_the_sdist_has_what_a_build_needs_and_the_wheel_is_compiled(dists: Path) -> None:
    sdist = only(dists, "*.tar.gz")
    top = sdist.name.removesuffix(".tar.gz")
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
    assert {f"{top}/{name}" for name in SDIST_FILES} <= names
    wheel = only(dists, "*.whl")
    assert wheel_tag(wheel).startswith("cp3"), wheel.name
    assert not wheel_tag(wheel).endswith("-any"), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        assert any(name.endswith(".so") for name in archive.namelist())
    check_wheel(wheel)


def test_the_compiled_wheel_installs_with_every_extra(dists: Path, venv: Path) -> None:
    wheel = only(dists, "*.whl")
    pip_install(venv, f"{wheel}[django,postgresql,supervisor]")
    smoke(venv, COMPILED, "--django")


def test_the_sdist_installs_without_a_compiler_as_pure_python(dists: Path, venv: Path) -> None:
    said = pip_install(venv, only(dists, "*.tar.gz"), env=NO_COMPILER)
    assert "spoolgear: installing the pure Python core, no C compiler" in said
    smoke(venv, PURE)


def test_the_pure_wheel_is_for_any_platform(dists: Path, venv: Path, tmp_path: Path) -> None:
    out = tmp_path / "pure"
    run(
        sys.executable,
        "-m",
        "build",
        "--wheel",
        "--outdir",
        out,
        only(dists, "*.tar.gz"),
        cwd=tmp_path,
        env={"SPOOLGEAR_PURE_PYTHON": "1"},
    )
    wheel = only(out, "*.whl")
    assert wheel_tag(wheel) == "py3-none-any"
    check_wheel(wheel)
    pip_install(venv, f"{wheel}[django]")
    smoke(venv, PURE, "--django")


def test_pip_install_of_the_source_tree_compiles(source: Path, venv: Path) -> None:
    said = pip_install(venv, f"{source}[postgresql]")
    assert "spoolgear: installing the pure Python core" not in said
    smoke(venv, COMPILED)


def test_a_compile_that_fails_falls_back_to_pure_python(
    source: Path, venv: Path, tmp_path: Path
) -> None:
    """Editable, with a compiler that fails: the install goes on, says why, runs pure."""
    tree = tmp_path / "editable"
    shutil.copytree(source, tree)
    said = pip_install(venv, "-e", tree, env=FAILING_COMPILER)
    assert "spoolgear: installing the pure Python core, compiling failed" in said
    smoke(venv, PURE, "--editable", str(tree))
