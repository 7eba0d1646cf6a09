"""The uWSGI network door (--uwsgi-socket) of a real broker process, with a raw-socket sender."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest

from broker.admin import AdminClient
from broker.errors import ServerError
from broker.protocol.uwsgi import decode_spool, encode_spool, encode_vars
from broker.uwsgi_client import REFUSED, SPOOLED, connect, send_spool
from tests.helpers import burst_drain, run_broker, uwsgi_exchange


def test_a_stored_request_is_answered_ff000001_and_closed(tmp_path: Path) -> None:
    with run_broker(
        "--store",
        f"sqlite:{tmp_path / 'db'}",
        "--uwsgi-socket",
        "127.0.0.1:0",
        "--uwsgi-socket",
        str(tmp_path / "uwsgi.sock"),
    ) as broker:
        tcp, unix = broker.uwsgi
        pairs = [(b"ud_spool_func", b"mail"), (b"to", b"a@example.org")]
        # Trailing bytes after the vars block are not read, as in uWSGI.
        assert uwsgi_exchange(tcp, encode_spool(pairs) + b"GET / HTTP/1.0\r\n") == SPOOLED
        assert uwsgi_exchange(unix, encode_spool([(b"k", b"v")])) == SPOOLED
        empty_with_modifier2 = struct.pack("<BHB", 17, 0, 5)
        assert uwsgi_exchange(tcp, empty_with_modifier2) == SPOOLED
        seen = burst_drain(broker.address, "mail", "uwsgi_spooler")
    assert [(name, decode_spool(data)[0]) for name, data in seen] == [
        ("mail", pairs),
        ("uwsgi_spooler", [(b"k", b"v")]),
        ("uwsgi_spooler", []),
    ]


@pytest.mark.parametrize(
    "vars_block",
    [
        encode_vars([(b"priority", b"../../etc")]),
        encode_vars([(b"at", b"tomorrow")]),
        encode_vars([(b"ud_spool_func", b"a\x00b")]),
        b"\x00\x00\x01\x00x",  # zero-length key
        b"\x01\x00k\xff\x00v",  # value runs past the block
    ],
)
def test_requests_that_cannot_become_jobs_are_refused_ff000000(vars_block: bytes) -> None:
    with run_broker("--uwsgi-socket", "127.0.0.1:0") as broker:
        packet = struct.pack("<BHB", 17, len(vars_block), 0) + vars_block
        assert uwsgi_exchange(broker.uwsgi[0], packet) == REFUSED
        with AdminClient(broker.address) as admin:
            assert admin.status() == []


def test_oversized_other_modifiers_and_slow_senders_are_closed_unanswered() -> None:
    with run_broker(
        "--uwsgi-socket", "127.0.0.1:0", "--uwsgi-max-size", "100", "--uwsgi-timeout", "0.3"
    ) as broker:
        address = broker.uwsgi[0]
        exactly = encode_spool([(b"k", b"v" * (100 - 7))])
        assert uwsgi_exchange(address, exactly) == SPOOLED
        assert uwsgi_exchange(address, struct.pack("<BHB", 17, 101, 0) + b"x" * 101) == b""
        assert uwsgi_exchange(address, struct.pack("<BHB", 0, 0, 0)) == b""
        started = time.monotonic()
        assert uwsgi_exchange(address, struct.pack("<BHB", 17, 10, 0) + b"abc") == b""
        assert time.monotonic() - started < 4
        with AdminClient(broker.address) as admin:
            assert [(s.name, s.total) for s in admin.status()] == [("uwsgi_spooler", 1)]


def test_acknowledged_requests_survive_kill_9_in_priority_order(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'db'}"
    with run_broker("--store", store, "--uwsgi-socket", "127.0.0.1:0") as broker:
        for priority in (b"5", None, b"1", b"3"):
            values = {b"ud_spool_func": b"job"}
            if priority is not None:
                values[b"priority"] = priority
            send_spool(broker.uwsgi[0], values)
        future = int(time.time()) + 3600
        send_spool(broker.uwsgi[0], {b"ud_spool_func": b"job", b"at": b"%d" % future})
        broker.process.kill()
    with run_broker("--store", store) as broker:
        seen = burst_drain(broker.address, "job")
        with AdminClient(broker.address) as admin:
            assert [(s.name, s.total) for s in admin.status()] == [("job", 1)]  # the `at` one
    priorities = [dict(decode_spool(data)[0]).get(b"priority") for _, data in seen]
    assert priorities == [b"1", b"3", b"5", None]


def test_named_spoolers_are_queues_and_the_client_reports_refusals() -> None:
    with run_broker("--uwsgi-socket", "127.0.0.1:0") as broker:
        send_spool(broker.uwsgi[0], {b"ud_spool_func": b"mail", b"spooler": b"/spool/bulk"})
        with pytest.raises(ServerError, match="refused"):
            send_spool(broker.uwsgi[0], {b"priority": b"high"})
        assert [name for name, _ in burst_drain(broker.address, "mail")] == []
        assert [name for name, _ in burst_drain(broker.address, "mail@/spool/bulk")] == [
            "mail@/spool/bulk"
        ]


def test_a_sender_that_leaves_early_does_not_disturb_the_broker() -> None:
    with run_broker("--uwsgi-socket", "127.0.0.1:0") as broker:
        for _ in range(20):
            with connect(broker.uwsgi[0], 5) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.sendall(encode_spool([(b"k", b"v")]))
        send_spool(broker.uwsgi[0], {b"k": b"last"})
        deadline = time.monotonic() + 5
        with AdminClient(broker.address) as admin:
            while time.monotonic() < deadline and admin.status()[0].total < 21:
                time.sleep(0.05)
            assert admin.status()[0].total == 21
