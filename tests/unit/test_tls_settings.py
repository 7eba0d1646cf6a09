"""TLS and permission settings fail closed, with a message that names the cause."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from broker.config import ServerConfig
from broker.core.permissions import Permissions
from broker.errors import ConfigurationError
from broker.tls import add_client_options, client_files, peer_names
from tests.pki import PKI


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


def parse(*argv: str) -> ServerConfig:
    parser = argparse.ArgumentParser()
    ServerConfig.add_options(parser)
    return ServerConfig.from_options(parser.parse_args(["--store", "memory:", *argv]))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ssl"], "a TLS listener needs --ssl-certificate and --ssl-key"),
        (["--ssl-ca-file", "ca.pem"], "--ssl-ca-file given without a TLS listener"),
        (["--plain-listen", "127.0.0.1:1"], "--plain-listen given without a TLS listener"),
        (
            ["--ssl", "--ssl-certificate", "/nonexistent.pem", "--ssl-key", "/nonexistent.key"],
            "cannot load --ssl-certificate /nonexistent.pem",
        ),
    ],
)
def test_tls_settings_that_cannot_work_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse(*argv)


def test_names_and_permissions_need_verified_certificates(pki: PKI) -> None:
    unverified = pki.server_args(verify_clients=False)
    with pytest.raises(ConfigurationError, match="need --ssl-ca-file"):
        parse(*unverified, "--admin-allow-name", "ops.example")
    with pytest.raises(ConfigurationError, match="--plain-listen is for running beside --ssl"):
        parse("--suwsgi-socket", "127.0.0.1:0", *unverified[1:], "--plain-listen", "h:1")


def test_a_key_that_does_not_match_its_certificate_is_refused(pki: PKI, tmp_path: Path) -> None:
    other = PKI(tmp_path / "other")
    with pytest.raises(ConfigurationError, match=r"KEY_VALUES_MISMATCH|key values mismatch"):
        parse("--ssl", "--ssl-certificate", str(pki.certificate), "--ssl-key", str(other.key))


def test_gearmand_variables_fill_the_files_and_may_not_contradict_flags(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEARMAND_SERVER_PEM", str(pki.certificate))
    monkeypatch.setenv("GEARMAND_SERVER_KEY", str(pki.key))
    config = parse("--ssl")
    assert (config.ssl_certificate, config.ssl_key) == (str(pki.certificate), str(pki.key))
    assert parse().ssl_certificate == ""  # no TLS listener: the variables are not for us
    with pytest.raises(
        ConfigurationError, match=r"--ssl-key /other\.key and \$GEARMAND_SERVER_KEY"
    ):
        parse("--ssl", "--ssl-key", "/other.key")


def test_client_options_need_ssl_and_fall_back_to_libgearman_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parser = argparse.ArgumentParser()
    add_client_options(parser)
    with pytest.raises(ConfigurationError, match="--ssl-key given without --ssl"):
        client_files(parser.parse_args(["--ssl-key", "k.pem"]))
    assert client_files(parser.parse_args([])) is None
    monkeypatch.setenv("GEARMAN_CLIENT_PEM", "from-env.pem")
    files = client_files(parser.parse_args(["--ssl", "--ssl-ca-file", "ca.pem"]))
    assert files is not None and (files.ca_file, files.certificate) == ("ca.pem", "from-env.pem")
    assert files.client_options() == [
        "--ssl",
        "--ssl-ca-file=ca.pem",
        "--ssl-certificate=from-env.pem",
    ]


def test_permissions_join_every_matching_name_and_fall_back_to_any_peer() -> None:
    rules = Permissions.from_toml(
        '[peer."a"]\nsubmit = ["a.*"]\n[peer."b"]\nsubmit = ["b.*"]\nwork = ["b.*"]\n'
        '[peer."*"]\nsubmit = ["public"]\n'
    )
    both = rules.for_names(("a", "b"))
    assert both.allows("submit", b"a.x") and both.allows("submit", b"b.x")
    assert not both.allows("work", b"a.x") and not both.allows("schedule", b"b.x")
    anyone = rules.for_names(())
    assert anyone.allows("submit", b"public") and not anyone.allows("submit", b"a.x")
    assert not Permissions.from_toml("").for_names(("a",)).allows("submit", b"a")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[peer", "not TOML"),
        ('[peers."a"]\n', "unknown tables \\['peers'\\]"),
        ('[peer."a"]\nsubmit = "a.*"\n', "submit must be a list"),
        ("peer = 1\n", "must be a table"),
    ],
)
def test_a_bad_permissions_file_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Permissions.from_toml(text)


def test_peer_names_are_common_names_then_dns_names() -> None:
    certificate = {
        "subject": ((("organizationName", "x"),), (("commonName", "svc"),)),
        "subjectAltName": (("DNS", "svc.example"), ("IP Address", "10.0.0.1"), ("DNS", "svc")),
    }
    assert peer_names(certificate) == ("svc", "svc.example")
    assert peer_names({}) == peer_names(None) == ()
