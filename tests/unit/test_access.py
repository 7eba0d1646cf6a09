"""Who may do what: the admin commands split into reading and control, by peer address."""

from __future__ import annotations

import pytest

from broker.core.access import LOOPBACK, Allowed, is_control
from broker.core.admin_commands import AdminCommands
from tests.unit.harness import Harness

CONTROL = [
    b"cancel job H:x:1",
    b"create function f",
    b"drop function f",
    b"drop failed all",
    b"retry failed all",
    b"maxqueue f 10",
    b"maxqueue f",
    b"verbose DEBUG",
    b"shutdown",
    b"SHUTDOWN graceful",
    b"show jobs",
    b"show unique jobs",
    b"SHOW UNIQUE JOBS",
]
READING = [
    b"status",
    b"prioritystatus",
    b"workers",
    b"version",
    b"getpid",
    b"verbose",
    b"show schedules",
    b"show failed",
]


@pytest.mark.parametrize("line", CONTROL)
def test_control_commands(line: bytes) -> None:
    assert is_control(line.split())


@pytest.mark.parametrize("line", READING)
def test_reading_commands(line: bytes) -> None:
    assert not is_control(line.split())


def test_networks() -> None:
    lan = Allowed(["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"])
    assert "10.1.2.3" in lan and "192.0.2.7" in lan and "2001:db8::1" in lan
    assert "::ffff:10.1.2.3" in lan  # an IPv4 peer on a dual-stack socket
    assert "192.0.2.8" not in lan and "127.0.0.1" not in lan and "gone" not in lan
    assert "unix" in lan  # a unix socket's peer is on this machine
    assert "127.0.0.1" in LOOPBACK and "::1" in LOOPBACK and "10.1.2.3" not in LOOPBACK
    assert "10.1.2.3" not in Allowed([])  # `--admin-allow none`: nobody over the network
    assert "gone" in Allowed.everyone() and "10.1.2.3" in Allowed.everyone()
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33' is not an address or a CIDR"):
        Allowed(["10.0.0.0/33"])


@pytest.mark.parametrize("line", CONTROL)
def test_control_is_refused_from_a_peer_outside_the_allowed_networks(line: bytes) -> None:
    h = Harness()
    name = line.split()[0].lower()
    assert h.peer("10.1.2.3").admin(line) == (
        b"ERR PERMISSION_DENIED " + name + b"+is+only+accepted+from+loopback\r\n"
    )
    assert h.shutdowns == []


def test_reading_is_answered_for_any_peer_and_control_for_loopback() -> None:
    h = Harness()
    h.peer().submit(b"f", b"x")
    outsider = h.peer("10.1.2.3")
    assert outsider.admin(b"status") == b"f\t1\t0\t0\n.\n"
    assert outsider.admin(b"show failed") == b".\n"
    assert h.peer("127.0.0.1").admin(b"show jobs").startswith(b"H:test:1\t")
    assert h.peer("::1").admin(b"shutdown graceful") == b"OK\r\n"
    assert h.shutdowns == [True]


def test_admin_allow_replaces_loopback() -> None:
    h = Harness()
    admin = AdminCommands(
        h.broker,
        verbose="ERROR",
        request_shutdown=h.shutdowns.append,
        control_from=Allowed(["10.0.0.0/8"]),
    )
    lan, local = h.peer("10.1.2.3"), h.peer("127.0.0.1")
    assert admin.run(lan.session, b"create function f") == b"OK\r\n"
    assert admin.run(local.session, b"create function g") == (
        b"ERR PERMISSION_DENIED create+is+only+accepted+from+--admin-allow+networks\r\n"
    )
    assert admin.run(local.session, b"status") == b"f\t0\t0\t0\n.\n"
