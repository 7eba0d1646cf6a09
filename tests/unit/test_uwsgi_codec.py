"""uwsgi vars and spool files, checked against the bytes in the uWSGI reference."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import ProtocolError
from broker.protocol.uwsgi import decode_spool, decode_vars, encode_spool, encode_vars


def test_the_reference_example() -> None:
    packet = encode_spool([(b"hello", b"world")])
    assert packet == bytes.fromhex("110e0000") + b"\x05\x00hello\x05\x00world"
    assert decode_spool(packet) == ([(b"hello", b"world")], b"")


def test_body_follows_the_vars_and_may_hold_anything() -> None:
    data = encode_spool([(b"a", b""), (b"a", b"2")], b"\x00body\x11")
    assert decode_spool(data) == ([(b"a", b""), (b"a", b"2")], b"\x00body\x11")


@pytest.mark.parametrize(
    "broken",
    [
        b"",
        b"\x11\x05",
        b"\x12\x00\x00\x00",  # short header, wrong modifier
        b"\x11\x0a\x00\x00\x01\x00k",  # vars block shorter than declared
    ],
)
def test_torn_or_foreign_files_are_protocol_errors(broken: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_spool(broken)


@pytest.mark.parametrize(
    "block", [b"\x00\x00\x01\x00v", b"\x05\x00ab", b"\x01\x00k\x09\x00v", b"\x01"]
)
def test_bad_pairs(block: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_vars(block)


def test_limits() -> None:
    with pytest.raises(ValueError):
        encode_vars([(b"", b"x")])
    with pytest.raises(ValueError):
        encode_spool([(b"k", b"v" * 40000), (b"l", b"v" * 40000)])


@given(
    st.lists(st.tuples(st.binary(min_size=1, max_size=20), st.binary(max_size=40)), max_size=10),
    st.binary(max_size=100),
)
def test_round_trip(pairs: list[tuple[bytes, bytes]], body: bytes) -> None:
    assert decode_spool(encode_spool(pairs, body)) == (pairs, body)


@given(st.binary(max_size=200))
def test_fuzz_raises_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_spool(data)
