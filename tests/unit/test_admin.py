"""Admin replies, byte for byte as gearmand 1.1.20 sends them (reference section 3)."""

from __future__ import annotations

import os

import pytest

from broker.core.admin_commands import tokenize
from broker.errors import ProtocolError
from broker.protocol.packets import PacketType
from tests.unit.harness import Harness

T = PacketType
INCOMPLETE = b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+"


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"foo", b"ERR UNKNOWN_COMMAND Unknown+server+commandfoo\r\n"),
        (b"", b"ERR UNKNOWN_COMMAND Unknown+server+command\r\n"),
        (b" status", b"ERR UNKNOWN_COMMAND Unknown+server+command\r\n"),
        (b"show", b"ERR UNKNOWN_COMMAND Unknown+server+commandshow\r\n"),
        (b"cancel", b"ERR UNKNOWN_COMMAND Unknown+server+commandcancel\r\n"),
        (b"cancel job", b"ERR UNKNOWN_COMMAND Unknown+server+commandcancel\r\n"),
        (b"cancel x y", b"ERR UNKNOWN_ERROR\r\n"),
        (b"cancel job a b", b"ERR UNKNOWN_ERROR\r\n"),
        (b"show foo", b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"),
        (b"show unique", b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"),
        (b"show jobs x", b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"),
        (b"create", INCOMPLETE + b"create\r\n"),
        (b"create foo bar", INCOMPLETE + b"create\r\n"),
        (b"drop function", INCOMPLETE + b"drop\r\n"),
        (b"maxqueue", INCOMPLETE + b"maxqueue\r\n"),
        (b"maxqueue absent 3", b"OK\r\n"),
        (b"drop function absent", b"ERR function not found\r\n"),
        (b"version extra args", b"OK 1.1.20+spoolgear.0.1.0\n"),
        (b"verbose", b"OK ERROR\n"),
        (b"STATUS", b".\n"),
        (b"SHOW UNIQUE JOBS", b".\n"),
        (b"Cancel Job H:x:1", b"ERR UNKNOWN_JOB\r\n"),
    ],
)
def test_replies(line: bytes, reply: bytes) -> None:
    assert Harness().peer().admin(line) == reply


def test_getpid() -> None:
    assert Harness().peer().admin(b"getpid") == b"OK %d\n" % os.getpid()


def test_more_than_five_words_closes() -> None:
    with pytest.raises(ProtocolError):
        Harness().peer().admin(b"maxqueue f 1 2 3 4")


def test_tokenize_collapses_runs_but_keeps_a_leading_empty_word() -> None:
    assert tokenize(b"show  unique   jobs ") == [b"show", b"unique", b"jobs"]
    assert tokenize(b" status") == [b"", b"status"]


def test_tables() -> None:
    h = Harness()
    worker, client = h.peer(), h.peer()
    worker.send(T.SET_CLIENT_ID, b"worker-A")
    worker.send(T.CAN_DO, b"f1")
    worker.send(T.CAN_DO, b"f2")
    client.submit(b"f1", b"", b"one", T.SUBMIT_JOB_HIGH_BG)
    client.submit(b"f1", b"", b"", T.SUBMIT_JOB_LOW)
    worker.grab()
    assert client.admin(b"status") == b"f1\t2\t1\t1\nf2\t0\t0\t1\n.\n"
    assert client.admin(b"prioritystatus") == b"f1\t0\t0\t1\t1\nf2\t0\t0\t0\t1\n.\n"
    assert client.admin(b"workers") == (
        b"%d 127.0.0.1 - :\n%d 127.0.0.1 worker-A : f1 f2\n.\n"
        % (client.session.fd, worker.session.fd)
    )
    assert client.admin(b"show jobs") == b"H:test:1\t0\t0\t1\nH:test:2\t0\t0\t0\n.\n"
    assert client.admin(b"show unique jobs") == b"one\n\n.\n"


def test_create_and_drop_function() -> None:
    h = Harness()
    admin, worker = h.peer(), h.peer()
    assert admin.admin(b"create function abc") == b"OK\r\n"  # no bytes eaten (a gearmand bug)
    assert admin.admin(b"status") == b"abc\t0\t0\t0\n.\n"
    admin.submit(b"abc")
    assert admin.admin(b"drop function abc") == (
        b"ERR there are still connected workers or executing clients\r\n"
    )
    worker.send(T.CAN_DO, b"abc")
    worker.send(T.WORK_COMPLETE, worker.grab()[0], b"")  # type: ignore[index]
    worker.disconnect()
    assert admin.admin(b"drop function abc") == b"OK\r\n"
    assert admin.admin(b"status") == b".\n"
