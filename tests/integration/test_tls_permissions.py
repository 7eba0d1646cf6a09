"""Who may do what by certificate name: ``--admin-allow-name`` for control admin
commands, ``--permissions`` for submitting to, working on and scheduling functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.protocol.packets import PacketType
from tests.helpers import RawConnection, run_broker
from tests.pki import PKI

T = PacketType

PERMISSIONS = """
[peer."billing.example"]
submit = ["billing.*"]
work = ["billing.*"]
schedule = ["billing.report"]

[peer."reports.example"]
submit = ["reports.*"]
work = ["reports.*"]
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


def test_control_commands_for_allowed_certificate_names(pki: PKI) -> None:
    args = [*pki.server_args(), "--admin-allow", "192.0.2.0/24"]  # not loopback
    with run_broker(*args, "--admin-allow-name", "ops.example", "--verbose", "warning") as broker:
        with RawConnection(broker.tls_port, pki.context("ops.example")) as ops:
            assert ops.admin(b"create function f\n") == b"OK\r\n"
        app = RawConnection(broker.tls_port, pki.context("app.example"))
        with app:
            assert app.admin(b"drop function f\n") == (
                b"ERR PERMISSION_DENIED drop+is+only+accepted+from+--admin-allow+networks"
                b"+or+--admin-allow-name+certificates\r\n"
            )
            assert app.admin(b"status\n") == b"f\t0\t0\t0\n.\n"  # reading stays open
    assert "refused admin command 'drop function f' from 127.0.0.1" in broker.log


def test_permissions_file_limits_functions_per_certificate(pki: PKI, tmp_path: Path) -> None:
    rules = tmp_path / "permissions.toml"
    rules.write_text(PERMISSIONS)
    broker_args = [*pki.server_args(), "--permissions", str(rules), "--verbose", "warning"]
    with run_broker(*broker_args) as broker:
        billing = RawConnection(broker.tls_port, pki.context("billing.example"))
        reports = RawConnection(broker.tls_port, pki.context("reports.example"))
        stranger = RawConnection(broker.tls_port, pki.context("stranger.example"))
        with billing, reports, stranger:
            billing.send(T.SUBMIT_JOB_BG, b"billing.invoice", b"", b"42")
            assert billing.packet().type is T.JOB_CREATED
            billing.send(T.SUBMIT_JOB_BG, b"reports.daily", b"", b"x")
            refused = billing.packet()
            assert refused.type is T.ERROR
            assert refused.args == (b"PERMISSION_DENIED", b"not allowed to submit to reports.daily")

            reports.send(T.CAN_DO, b"billing.invoice")  # another team's function
            assert reports.packet().args == (
                b"PERMISSION_DENIED",
                b"not allowed to work on billing.invoice",
            )
            reports.send(T.GRAB_JOB)
            assert reports.packet().type is T.NO_JOB  # it got no ability, so no payload

            billing.send(T.CAN_DO, b"billing.invoice")
            billing.send(T.GRAB_JOB)
            assignment = billing.packet()
            assert assignment.type is T.JOB_ASSIGN and assignment.args[2] == b"42"

            every_second = (b"billing.invoice", b"u", b"*", b"*", b"*", b"*", b"*", b"")
            billing.send(T.SUBMIT_JOB_SCHED, *every_second)
            assert billing.packet().args[1] == b"not allowed to schedule billing.invoice"

            stranger.send(T.SUBMIT_JOB, b"billing.invoice", b"", b"x")
            assert stranger.packet().args[0] == b"PERMISSION_DENIED"  # no "*" table: nothing
    assert "refused 127.0.0.1 submit 'reports.daily'" in broker.log
    assert "for stranger.example" in broker.log


def test_a_bad_permissions_file_stops_start_up(pki: PKI, tmp_path: Path) -> None:
    rules = tmp_path / "permissions.toml"
    rules.write_text('[peer."x"]\nsubmitt = ["a"]\n')
    with (
        pytest.raises(
            AssertionError, match=r"permissions\.toml: \[peer\.\"x\"\]: unknown keys .*submitt"
        ),
        run_broker(*pki.server_args(), "--permissions", str(rules)),
    ):
        pass
