"""The documentation's code examples work, and it cites only files the repository has.

The README's 30-second example runs for real, and so does every ``spoolgear status``,
``workers``, ``failed`` and ``submit`` line that names no other host. Every other example
is checked as far as it can be without the hosts it names: each ``spoolgear`` line is
parsed by the real parser (a ``serve`` line also meets the broker's own checks), each
``manage.py`` line's command and options exist in a real Django project, each name a
Python example imports from spoolgear exists, and each TOML, INI and YAML example parses
(a permissions or configuration file by the broker's own reader).
"""

from __future__ import annotations

import ast
import configparser
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from broker import __version__, cli
from broker.banner import read_banner
from broker.config import ServerConfig, read_config_file
from broker.core.permissions import Permissions
from broker.errors import ConfigurationError
from broker.worker import Worker
from tests.helpers import ROOT, SPOOLGEAR, run_broker

PAGES = sorted(
    [
        *ROOT.glob("docs/*.md"),
        ROOT / "README.md",
        ROOT / "SECURITY.md",
        ROOT / "CHANGELOG.md",
        ROOT / "supervisor" / "README.md",
    ]
)
EXAMPLE_PROJECT = ROOT / "examples" / "project"
OUR_PACKAGES = ("broker", "django_jobs")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
# A file outside the repository: the design notes and references it was built from.
OUTSIDE = re.compile(r"(?:\.\./)?shared/reference|\bDESIGN\.md|\.\./shared\b")
# What a serve line may fail on here and not on the reader's host.
READER_OWN = r"No such file or directory|not a directory"
CITED_PATH = re.compile(
    r"(?<![\w/.-])((?:broker|django_jobs|tests|bench|examples|docs|ops|supervisor)/[\w./@*-]*[\w/*])"
)


@dataclass(frozen=True)
class Example:
    page: Path
    language: str
    text: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}: {self.text.splitlines()[0] if self.text else ''}"


def examples(language: str) -> list[Example]:
    found = []
    for page in PAGES:
        for match in FENCE.finditer(page.read_text(encoding="utf-8")):
            if match.group(1) == language:
                found.append(Example(page, language, match.group(2)))
    return found


def command_lines(script: str) -> Iterator[list[str]]:
    """Each command of a shell example as words: continuations joined, comments, a
    trailing ``&`` and ``...`` placeholders dropped."""
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        words = [word for word in words if word not in ("&", "...")]
        if words:
            yield words


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    files = []
    for name in listed:
        path = ROOT / name
        if path.suffix in (".png", ".so") or not path.is_file():
            continue
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        files.append(path)
    return files


def test_nothing_cites_a_file_outside_the_repository() -> None:
    this = Path(__file__)
    cited = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in tracked_text_files()
        if path != this
        for match in OUTSIDE.finditer(path.read_text(encoding="utf-8"))
    ]
    assert cited == [], "users have no such file: carry the facts into docs/"


def test_every_repository_path_cited_exists() -> None:
    missing = []
    for path in tracked_text_files():
        if path.name == ".gitignore":
            continue
        for match in CITED_PATH.finditer(path.read_text(encoding="utf-8")):
            cited = match.group(1)
            exists = any(ROOT.glob(cited)) if "*" in cited else (ROOT / cited).exists()
            if not exists:
                missing.append(f"{path.relative_to(ROOT)}: {cited}")
    assert missing == []


def check_spoolgear_lines(script: str) -> None:
    parser, _ = cli._parser()
    for words in command_lines(script):
        if words[0] != "spoolgear":
            continue
        args = parser.parse_args(words[1:])
        if args.command != "serve" or args.config:
            continue
        try:
            ServerConfig.from_options(args)
        except ConfigurationError as exc:
            # The certificates, files and directories an example names are the reader's own,
            # and "..." stands for options the example leaves out.
            elided = "..." in script
            assert elided or re.search(READER_OWN, str(exc)), f"{' '.join(words)}: {exc}"


@pytest.mark.parametrize("example", examples("sh"), ids=str)
def test_spoolgear_command_lines_parse_and_pass_the_checks(example: Example) -> None:
    check_spoolgear_lines(example.text)


def manage_py_lines() -> list[tuple[Example, list[str]]]:
    return [
        (example, words[2:])
        for example in examples("sh")
        for words in command_lines(example.text)
        if words[:2] == ["python", "manage.py"]
    ]


def test_manage_py_lines_name_real_commands_and_options() -> None:
    lines = manage_py_lines()
    assert lines, "the Django pages show manage.py commands"
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "exampleshop.settings"}
    helps: dict[str, str] = {}
    for example, words in lines:
        command = words[0]
        if command not in helps:
            answer = subprocess.run(
                [sys.executable, "manage.py", command, "--help"],
                cwd=EXAMPLE_PROJECT,
                env=environment,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert answer.returncode == 0, f"{example}: manage.py {command}: {answer.stderr}"
            helps[command] = answer.stdout
        options = (word.strip("[]").split("=")[0] for word in words)
        for option in (word for word in options if re.fullmatch(r"--?[\w-]+", word)):
            assert re.search(rf"(^|[\s,\[]){re.escape(option)}\b", helps[command]), (
                f"{example}: manage.py {command} has no {option}"
            )


IMPORT_CHECK = """
import importlib, json, sys
import django
django.setup()
missing = []
for module, names in json.loads(sys.argv[1]):
    try:
        loaded = importlib.import_module(module)
    except ImportError as exc:
        missing.append(f"{module}: {exc}")
        continue
    for name in names:
        try:  # as ``from module import name`` does: an attribute, else a submodule
            getattr(loaded, name) if hasattr(loaded, name) else importlib.import_module(
                f"{module}.{name}"
            )
        except ImportError:
            missing.append(f"{module}.{name}")
print(json.dumps(missing))
"""


def columns(text: str) -> list[str]:
    """A "before / after" example laid out side by side, as its two columns: the second
    starts where the first line's second comment does."""
    header = text.splitlines()[0]
    offset = re.search(r"(?<=\S)\s{2,}[#;]", header)
    assert offset, f"not two columns: {header}"
    start = offset.end() - 1
    rows = text.splitlines()
    return ["\n".join(row[:start].rstrip() for row in rows), "\n".join(row[start:] for row in rows)]


def imported_names(example: Example) -> list[tuple[str, list[str]]]:
    """(module, names) of each import from spoolgear in a Python example (of each column
    of one laid out "before" and "after" side by side)."""
    try:
        trees = [ast.parse(example.text)]
    except SyntaxError:
        trees = [ast.parse(column) for column in columns(example.text)]
    pairs = []
    for node in (node for tree in trees for node in ast.walk(tree)):
        if isinstance(node, ast.ImportFrom) and node.module:
            pairs.append((node.module, [alias.name for alias in node.names if alias.name != "*"]))
        elif isinstance(node, ast.Import):
            pairs += [(alias.name, []) for alias in node.names]
    return [(module, names) for module, names in pairs if module.startswith(OUR_PACKAGES)]


def test_python_examples_import_names_that_exist() -> None:
    wanted = [pair for example in examples("python") for pair in imported_names(example)]
    assert len(wanted) > 10
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "exampleshop.settings",
        "PYTHONPATH": f"{EXAMPLE_PROJECT}{os.pathsep}{ROOT}",
    }
    answer = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK, json.dumps(wanted)],
        cwd=EXAMPLE_PROJECT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(answer.stdout) == []


@pytest.mark.parametrize("example", examples("python"), ids=str)
def test_python_examples_are_python(example: Example) -> None:
    try:
        compile(example.text, str(example.page), "exec")
    except SyntaxError:
        for column in columns(example.text):
            compile(column, str(example.page), "exec")


@pytest.mark.parametrize("example", examples("toml"), ids=str)
def test_toml_examples_are_read_by_the_broker(example: Example, tmp_path: Path) -> None:
    table = tomllib.loads(example.text)
    if "peer" in table:
        Permissions.from_toml(example.text)
    else:
        (tmp_path / "broker.toml").write_text(example.text)
        read_config_file(str(tmp_path / "broker.toml"))


@pytest.mark.parametrize("example", examples("ini"), ids=str)
def test_ini_examples_parse(example: Example) -> None:
    """An INI file, or a uwsgi.ini laid out beside the command that replaces it."""
    try:
        configparser.ConfigParser(interpolation=None).read_string(example.text)
    except configparser.MissingSectionHeaderError:
        before, after = columns(example.text)
        configparser.ConfigParser(interpolation=None).read_string("[uwsgi]\n" + before)
        check_spoolgear_lines(after)


@pytest.mark.parametrize("example", examples("yaml"), ids=str)
def test_yaml_examples_parse(example: Example) -> None:
    assert yaml.safe_load(example.text)


def section(page: Path, heading: str) -> str:
    return page.read_text(encoding="utf-8").split(f"\n## {heading}\n", 1)[1].split("\n## ")[0]


def test_the_readme_30_second_example_runs(tmp_path: Path) -> None:
    """As written, with the test's own port and data directory instead of 4730 and the
    user's home."""
    blocks = [
        match.groups() for match in FENCE.finditer(section(ROOT / "README.md", "In 30 seconds"))
    ]
    worker_code = next(text for language, text in blocks if language == "python")
    script = next(text for language, text in blocks if "spoolgear serve" in text)
    environment = {**os.environ, "SPOOLGEAR_DATA_DIR": str(tmp_path)}
    started: list[subprocess.Popen[str]] = []
    address = ""
    try:
        for line in script.splitlines():
            words = shlex.split(line, comments=True)
            expected = re.search(r"prints: (.*)$", line)
            if words == ["spoolgear", "serve", "&"]:
                broker = subprocess.Popen(
                    [*SPOOLGEAR, "serve", "--port", "0"],
                    env=environment,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                started.append(broker)
                assert broker.stdout is not None
                address = read_banner(broker.stdout.readline()).gearman
            elif words == ["python", "worker.py", "&"]:
                (tmp_path / "worker.py").write_text(worker_code.replace("127.0.0.1:4730", address))
                started.append(subprocess.Popen([sys.executable, "worker.py"], cwd=tmp_path))
            else:
                assert words[0] == "spoolgear", line
                command = [*SPOOLGEAR, words[1], "--server", address, *words[2:]]
                answer = subprocess.run(
                    command, env=environment, capture_output=True, text=True, timeout=60
                )
                assert answer.returncode == 0, f"{line}: {answer.stderr}"
                if expected:
                    assert answer.stdout.strip() == expected.group(1)
                if words[1] == "status":
                    assert "resize" in answer.stdout
    finally:
        for process in reversed(started):
            process.terminate()
            process.communicate(timeout=10)
    assert (tmp_path / "spoolgear.db").exists(), "the default store is the data dir's SQLite file"


def test_the_changelog_names_this_version_as_its_latest_release() -> None:
    releases = re.findall(
        r"^## \[(\d[^\]]*)\] - \d{4}-\d{2}-\d{2}$",
        (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"),
        re.M,
    )
    assert releases and releases[0] == __version__


# Subcommands a documented line can run here as written, against a local broker.
RUNNABLE_HERE = {"status", "workers", "failed", "submit"}
ELSEWHERE = {"--server", "-s", "--ssl", "--ssl-ca-file", "--ssl-certificate", "--ssl-key"}


def test_documented_commands_run_against_a_live_broker(tmp_path: Path) -> None:
    """Each ``spoolgear status|workers|failed|submit`` line that names no other host, run
    as written against a real broker (its address added) with a worker for every function
    the lines submit to."""
    lines = [
        (example, words)
        for example in examples("sh")
        for words in command_lines(example.text)
        if words[0] == "spoolgear" and words[1] in RUNNABLE_HERE and not ELSEWHERE & set(words)
    ]
    assert len(lines) > 5
    functions = {words[2] for _, words in lines if words[1] == "submit"}
    with run_broker("--store", f"sqlite:{tmp_path / 'jobs.db'}") as broker:
        worker = Worker([broker.address], client_id="docs")
        for function in functions:
            worker.register(function, lambda job: job.data)
        serving = threading.Thread(target=worker.work, daemon=True)
        serving.start()
        try:
            for example, words in lines:
                answer = subprocess.run(
                    [*SPOOLGEAR, words[1], "--server", broker.address, *words[2:]],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert answer.returncode == 0, f"{example}: {' '.join(words)}: {answer.stderr}"
        finally:
            worker.stop()
            serving.join(30)
            worker.close()
