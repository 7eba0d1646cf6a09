"""The sans-IO reader: every input whole, byte at a time, and with trailing bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import ProtocolError
from broker.protocol.packets import (
    ARGUMENT_COUNTS,
    MAGIC_REQ,
    MAGIC_RES,
    Packet,
    PacketType,
    encode_packet,
)
from broker.protocol.reader import AdminLine, PacketReader

T = PacketType


def read_all(chunks: list[bytes], **options: int) -> tuple[list[object], int]:
    reader = PacketReader(**options)  # type: ignore[arg-type]
    events: list[object] = []
    for chunk in chunks:
        reader.feed(chunk)
        while (event := reader.next_event()) is not None:
            events.append(event)
    return events, reader.pending


def three_ways(data: bytes, expected: list[object]) -> None:
    """Whole, byte-at-a-time, and followed by a partial packet that must stay buffered."""
    assert read_all([data]) == (expected, 0)
    assert read_all([bytes([b]) for b in data]) == (expected, 0)
    trailing = encode_packet(T.SUBMIT_JOB, b"f", b"u", b"payload", magic=MAGIC_REQ)[:-3]
    assert read_all([data + trailing]) == (expected, len(trailing))


def test_submit_packet_keeps_nuls_in_the_payload() -> None:
    data = encode_packet(T.SUBMIT_JOB, b"reverse", b"u-1", b"a\0b\0", magic=MAGIC_REQ)
    assert data == b"\0REQ\x00\x00\x00\x07\x00\x00\x00\x10reverse\0u-1\0a\0b\0"
    three_ways(data, [Packet(MAGIC_REQ, T.SUBMIT_JOB, (b"reverse", b"u-1", b"a\0b\0"))])


def test_every_type_round_trips_with_its_argument_count() -> None:
    for packet_type, count in ARGUMENT_COUNTS.items():
        args = tuple(b"arg%d" % i for i in range(count))
        data = encode_packet(packet_type, *args, magic=MAGIC_RES)
        three_ways(data, [Packet(MAGIC_RES, packet_type, args)])


def test_reduce_submit_has_four_arguments_before_the_data() -> None:
    data = encode_packet(T.SUBMIT_REDUCE_JOB, b"f", b"u", b"reducer", b"", b"data", magic=MAGIC_REQ)
    three_ways(
        data, [Packet(MAGIC_REQ, T.SUBMIT_REDUCE_JOB, (b"f", b"u", b"reducer", b"", b"data"))]
    )


def test_body_of_an_argumentless_packet_is_ignored() -> None:
    data = b"\0REQ\x00\x00\x00\x09\x00\x00\x00\x04junk"
    three_ways(data, [Packet(MAGIC_REQ, T.GRAB_JOB, ())])


def test_admin_lines_mix_with_packets_and_lose_their_crlf() -> None:
    echo = encode_packet(T.ECHO_REQ, b"hi", magic=MAGIC_REQ)
    data = b"version\r\n" + echo + b"status\n"
    three_ways(
        data, [AdminLine(b"version"), Packet(MAGIC_REQ, T.ECHO_REQ, (b"hi",)), AdminLine(b"status")]
    )


def test_bad_magic_closes() -> None:
    with pytest.raises(ProtocolError) as caught:
        read_all([b"\0XYZ\x00\x00\x00\x09\x00\x00\x00\x00"])
    assert caught.value.close


@pytest.mark.parametrize("number", [0, 43, 1000])
def test_unknown_type_closes(number: int) -> None:
    with pytest.raises(ProtocolError) as caught:
        read_all([b"\0REQ" + number.to_bytes(4, "big") + b"\0\0\0\0"])
    assert caught.value.close


def test_oversized_packet_is_refused_from_its_header() -> None:
    header = b"\0REQ\x00\x00\x00\x12" + (1000).to_bytes(4, "big")
    with pytest.raises(ProtocolError) as caught:
        read_all([header], max_packet_size=999)
    assert caught.value.close and caught.value.code == b"ARGUMENT_TOO_LARGE"
    body = b"f\0u\0" + b"x" * 996
    assert read_all([header + body], max_packet_size=1000)[0][0].type is T.SUBMIT_JOB_BG


def test_missing_arguments_are_an_error_and_the_stream_goes_on() -> None:
    short = encode_packet(T.SUBMIT_JOB_BG, b"only-a-function", magic=MAGIC_REQ)
    echo = encode_packet(T.ECHO_REQ, b"next", magic=MAGIC_REQ)
    reader = PacketReader()
    reader.feed(short + echo)
    with pytest.raises(ProtocolError) as caught:
        reader.next_event()
    assert not caught.value.close and caught.value.code == b"INVALID_PACKET"
    assert reader.next_event() == Packet(MAGIC_REQ, T.ECHO_REQ, (b"next",))


def test_admin_line_limit() -> None:
    assert read_all([b"x" * 100 + b"\n"], max_line_length=100)[0] == [AdminLine(b"x" * 100)]
    with pytest.raises(ProtocolError):
        read_all([b"x" * 101], max_line_length=100)


def test_text_is_not_accepted_on_the_client_side() -> None:
    with pytest.raises(ProtocolError):
        read_all([b"OK 1.1.20\n"], accept_text=False)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_fuzz_raises_only_protocol_errors(chunks: list[bytes]) -> None:
    reader = PacketReader(max_packet_size=1024, max_line_length=256)
    try:
        for chunk in chunks:
            reader.feed(chunk)
            while True:
                try:
                    if reader.next_event() is None:
                        break
                except ProtocolError as exc:
                    if exc.close:
                        raise
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(list(ARGUMENT_COUNTS)),
    st.lists(st.binary(max_size=16), max_size=8),
    st.integers(min_value=1, max_value=7),
)
def test_fuzz_valid_packets_survive_any_split(
    packet_type: PacketType, raw: list[bytes], step: int
) -> None:
    count = ARGUMENT_COUNTS[packet_type]
    args = tuple(a.replace(b"\0", b"") for a in (raw + [b""] * count)[:count])
    if count:
        args = (*args[:-1], (raw or [b""])[0])  # the tail may hold NULs
    data = encode_packet(packet_type, *args, magic=MAGIC_REQ)
    chunks = [data[i : i + step] for i in range(0, len(data), step)]
    assert read_all(chunks) == ([Packet(MAGIC_REQ, packet_type, args)], 0)
