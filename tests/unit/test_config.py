"""The ``spoolgear serve`` options are declared once (``ServerConfig``); the parser, the
validation, the configuration file and the docs' option reference follow from them."""

from __future__ import annotations

import argparse
import re
from dataclasses import fields
from pathlib import Path

import pytest

from broker import cli
from broker.config import ServerConfig, read_config_file
from broker.errors import ConfigurationError
from broker.options import declared_options, flag_of
from broker.uwsgi_compat.spooler import SpoolerSettings

DECLARED = {flag_of(declared) for declared in fields(ServerConfig)}


def parse(*argv: str) -> ServerConfig:
    parser = argparse.ArgumentParser()
    ServerConfig.add_options(parser)
    return ServerConfig.from_options(parser.parse_args(["--store", "memory:", *argv]))


def test_the_option_reference_lists_every_declared_option_and_nothing_else() -> None:
    from docs.hooks import options_page

    serve, spooler = options_page().split("## `spoolgear spooler`")
    assert set(re.findall(r"^\| `(--[a-z-]+)", serve, re.MULTILINE)) == DECLARED
    documented = set(re.findall(r"^\| `(--[a-z-]+)", spooler, re.MULTILINE))
    assert documented == {flag_of(declared) for declared in declared_options(SpoolerSettings)}


def cli_with_file(tmp_path: Path, text: str, *argv: str) -> argparse.Namespace:
    (tmp_path / "broker.toml").write_text(text)
    return cli._parse(["serve", "--config", str(tmp_path / "broker.toml"), *argv])


def test_a_configuration_file_gives_options_and_the_command_line_wins(tmp_path: Path) -> None:
    text = """
port = 4731
job-retries = 3
transient = []
uwsgi-socket = "127.0.0.1:3031"
admin-allow = ["10.0.0.0/8"]
packet-timeout = 5
verbose = "info"
ssl = false
"""
    args = cli_with_file(tmp_path, text, "--port", "0", "--admin-allow", "127.0.0.1")
    config = ServerConfig.from_options(args)
    assert (config.port, config.job_retries, config.transient) == (0, 3, ())
    assert config.uwsgi_sockets == ("127.0.0.1:3031",)
    assert config.admin_allow == ("127.0.0.1",)  # a repeatable option given replaces the file's
    assert (config.packet_timeout, config.verbose, config.ssl) == (5.0, "INFO", False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 1", "'prot' is not an option; did you mean 'port'?"),
        ("handle_prefix = 'x'", "'handle_prefix' is not an option"),
        ("port = true", "port must be int, not True"),
        ("port = 'many'", "port: invalid literal for int()"),
        ("allow = [1]", "allow must be a string or a list of strings"),
        ("port = [", "--config"),
    ],
)
def test_a_bad_configuration_file_is_refused_naming_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "broker.toml").write_text(text)
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        read_config_file(str(tmp_path / "broker.toml"))


def test_a_configuration_file_value_meets_the_same_checks(tmp_path: Path) -> None:
    args = cli_with_file(tmp_path, "port = 70000")
    with pytest.raises(ConfigurationError, match="--port must be 0-65535, got 70000"):
        ServerConfig.from_options(args)


def test_a_missing_configuration_file_stops_the_command_with_its_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli._parse(["serve", "--config", str(tmp_path / "nowhere.toml")])
    assert stopped.value.code == 2
    assert "nowhere.toml" in capsys.readouterr().err


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
