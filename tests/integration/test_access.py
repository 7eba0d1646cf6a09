"""``--allow`` and ``--admin-allow`` on a real broker (the peer here is loopback, so the
networks given leave it out)."""

from __future__ import annotations

from broker.protocol.packets import PacketType
from tests.helpers import RawConnection, run_broker, uwsgi_exchange

T = PacketType


def test_a_peer_outside_allow_is_cut_off_on_both_doors() -> None:
    args = ("--allow", "10.0.0.0/8", "--uwsgi-socket", "127.0.0.1:0")
    with run_broker(*args) as broker:
        with RawConnection(broker.port) as connection:
            assert connection.closed_by_peer()
        assert uwsgi_exchange(broker.uwsgi[0], b"\x11\x00\x00\x00") == b""  # no answer
    # At the default log level: a misconfigured client is visible where an operator looks.
    assert "WARNING spoolgear.connection: refused a connection from 127.0.0.1" in broker.log
    allowed = ("--allow", "127.0.0.1", "--allow", "10.0.0.0/8")
    with run_broker(*allowed) as broker, RawConnection(broker.port) as connection:
        assert connection.admin(b"version\n").startswith(b"OK ")


def test_admin_allow_replaces_the_loopback_default() -> None:
    lan_only = ("--admin-allow", "10.0.0.0/8")
    with run_broker(*lan_only) as broker, RawConnection(broker.port) as connection:
        connection.send(T.SUBMIT_JOB_BG, b"f", b"", b"x")
        assert connection.packet().type is T.JOB_CREATED
        assert connection.admin(b"status\n") == b"f\t1\t0\t0\n.\n"
        assert connection.admin(b"cancel job H:x:1\n") == (
            b"ERR PERMISSION_DENIED cancel+is+only+accepted+from+--admin-allow+networks\r\n"
        )
        assert connection.admin(b"shutdown\n").startswith(b"ERR PERMISSION_DENIED shutdown")
    assert "WARNING" in broker.log and "cancel" in broker.log  # the refusal, logged by default
    with run_broker() as broker, RawConnection(broker.port) as connection:
        assert connection.admin(b"create function f\n") == b"OK\r\n"  # loopback by default
