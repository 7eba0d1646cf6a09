"""uwsgi packets and spool files (docs/uwsgi.md).

A packet is a 4-byte header (modifier1, little-endian u16 size of the vars block,
modifier2) and a vars block of ``u16 key_len, key, u16 val_len, val`` pairs. A
spool file is the same header and vars with the raw body after them. Keys and
values are bytes; a zero-length key or a pair that runs past the block is an
error, as in uWSGI; a duplicate key keeps the last value when read as a dict.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from broker.errors import ProtocolError

SPOOL_MODIFIER = 17
HEADER = struct.Struct("<BHB")
PAIR_LENGTH = struct.Struct("<H")
# The header's size field is 16 bits.
MAX_VARS_SIZE = 0xFFFF

Pairs = list[tuple[bytes, bytes]]


def encode_vars(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    parts = []
    for key, value in pairs:
        if not key:
            raise ValueError("a uwsgi var needs a non-empty key")
        if len(key) > MAX_VARS_SIZE or len(value) > MAX_VARS_SIZE:
            raise ValueError("a uwsgi key or value is limited to 65535 bytes")
        parts += [PAIR_LENGTH.pack(len(key)), key, PAIR_LENGTH.pack(len(value)), value]
    return b"".join(parts)


def decode_vars(block: bytes) -> Pairs:
    pairs = []
    position, end = 0, len(block)
    while position < end:
        key, position = _field(block, position, "key")
        if not key:
            raise ProtocolError("uwsgi var with an empty key")
        value, position = _field(block, position, "value")
        pairs.append((key, value))
    return pairs


def _field(block: bytes, position: int, what: str) -> tuple[bytes, int]:
    if position + 2 > len(block):
        raise ProtocolError(f"uwsgi var {what} length runs past the vars block")
    (length,) = PAIR_LENGTH.unpack_from(block, position)
    start = position + 2
    if start + length > len(block):
        raise ProtocolError(f"uwsgi var {what} runs past the vars block")
    return block[start : start + length], start + length


def encode_spool(pairs: Iterable[tuple[bytes, bytes]], body: bytes = b"") -> bytes:
    """A spool file (or, with an empty body, a modifier1 17 packet)."""
    block = encode_vars(pairs)
    if len(block) > MAX_VARS_SIZE:
        raise ValueError(
            f"uwsgi vars take {len(block)} bytes, the limit is {MAX_VARS_SIZE}; "
            "put large values in the body"
        )
    return HEADER.pack(SPOOL_MODIFIER, len(block), 0) + block + body


def decode_spool(data: bytes) -> tuple[Pairs, bytes]:
    """Split a spool file into its vars and body; ``ProtocolError`` if torn or malformed."""
    block, body = split_spool(data)
    return decode_vars(block), body


def split_spool(data: bytes) -> tuple[bytes, bytes]:
    """A spool file's raw vars block and body; ``ProtocolError`` if it is torn."""
    if len(data) < HEADER.size:
        raise ProtocolError(f"spool file of {len(data)} bytes is shorter than its header")
    modifier1, size, _modifier2 = HEADER.unpack_from(data)
    if modifier1 != SPOOL_MODIFIER:
        raise ProtocolError(f"spool file starts with modifier1 {modifier1}, not 17")
    end = HEADER.size + size
    if len(data) < end:
        raise ProtocolError(
            f"spool file is truncated: vars need {size} bytes, {len(data) - HEADER.size} present"
        )
    return data[HEADER.size : end], data[end:]
