"""The ``spoolgear serve`` options are declared once (``ServerConfig``); the parser, the
validation and the README follow from the declarations."""

from __future__ import annotations

import argparse
import re
from dataclasses import fields

import pytest

from broker.config import ServerConfig, flag_of
from broker.errors import ConfigurationError
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()
DECLARED = {flag_of(declared) for declared in fields(ServerConfig)}


def parse(*argv: str) -> ServerConfig:
    parser = argparse.ArgumentParser()
    ServerConfig.add_options(parser)
    return ServerConfig.from_options(parser.parse_args(["--store", "memory:", *argv]))


def test_every_declared_option_is_in_the_readme() -> None:
    missing = sorted(flag for flag in DECLARED if f"`{flag}" not in README)
    assert missing == [], "document these in README.md"


def test_the_readme_option_table_names_only_declared_options() -> None:
    section = README.split("## Running the broker", 1)[1].split("\n### ", 1)[0]
    documented = set(re.findall(r"^\| `(--[a-z-]+)", section, re.MULTILINE))
    assert documented and documented <= DECLARED


def test_defaults_types_and_repeatable_options_come_from_the_declarations() -> None:
    config = parse(
        "--port",
        "0",
        "--transient",
        "none",
        "--uwsgi-socket",
        "127.0.0.1:0",
        "--uwsgi-socket",
        "/tmp/x.sock",
        "--verbose",
        "info",
    )
    assert (config.port, config.transient, config.verbose) == (0, (), "INFO")
    assert config.uwsgi_sockets == ("127.0.0.1:0", "/tmp/x.sock")
    assert parse().transient == ServerConfig.__dataclass_fields__["transient"].default
    assert parse("--packet-timeout", "2.5").packet_timeout == 2.5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "--port must be 0-65535, got 70000"),
        (["--allow", "10.0.0.0/33"], "--allow must be addresses or CIDR networks"),
        (["--admin-allow", "lan"], "--admin-allow must be addresses or CIDR networks"),
        (["--page-bytes", "0"], "--page-bytes must be positive, got 0"),
        (["--max-admin-line", "10"], "--max-admin-line must be at least 64 bytes, got 10"),
        (["--spool-function", "a@b"], "--spool-function must be a non-empty name without '@'"),
        (
            ["--max-unread-output", "100"],
            "--max-unread-output must be at least --max-output-buffer",
        ),
        (["--store-lease", "0.5"], "--store-lease must be at least 1 second, got 0.5"),
        (["--store-lease", "5"], "--store-lease applies only to a postgresql store"),
        (["--store-retry", "5"], "--store-retry applies only to a postgresql store"),
        (["--sync", "off"], "--sync must be one of full, normal, got 'off'"),
        (
            ["--store", "memory:", "--sync", "normal"],
            "--sync applies only to a durable --store, not memory:",
        ),
        (
            ["--store", "memory:", "--lazy-commit-delay", "0.01"],
            "--lazy-commit-delay applies only to a durable --store, not memory:",
        ),
        (
            ["--store", "memory:", "--commit-delay", "0.01"],
            "--commit-delay applies only to a durable --store, not memory:",
        ),
        (
            ["--store", "sqlite:jobs.db", "--commit-delay", "0.01", "--lazy-commit-delay", "0.002"],
            "--lazy-commit-delay 0.002 is shorter than --commit-delay 0.01",
        ),
    ],
)
def test_bad_values_are_refused_with_the_option_named(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        parse(*argv)
