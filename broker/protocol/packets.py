"""Gearman binary packets: type codes, argument counts and the encoder.

Argument counts come from libgearman's command table (gearmand 1.1.20), which is
what both the C client library and the server use; the PROTOCOL text differs for
the reduce submits (four arguments, not three) and STATUS_RES_UNIQUE (it echoes
the unique). docs/gearmand.md says what is byte for byte the same.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import NamedTuple

HEADER = struct.Struct(">4sII")
HEADER_SIZE = HEADER.size


# Requests travel to the server, responses come back from it.
MAGIC_REQ = b"\0REQ"
MAGIC_RES = b"\0RES"


class PacketType(IntEnum):
    CAN_DO = 1
    CANT_DO = 2
    RESET_ABILITIES = 3
    PRE_SLEEP = 4
    UNUSED = 5
    NOOP = 6
    SUBMIT_JOB = 7
    JOB_CREATED = 8
    GRAB_JOB = 9
    NO_JOB = 10
    JOB_ASSIGN = 11
    WORK_STATUS = 12
    WORK_COMPLETE = 13
    WORK_FAIL = 14
    GET_STATUS = 15
    ECHO_REQ = 16
    ECHO_RES = 17
    SUBMIT_JOB_BG = 18
    ERROR = 19
    STATUS_RES = 20
    SUBMIT_JOB_HIGH = 21
    SET_CLIENT_ID = 22
    CAN_DO_TIMEOUT = 23
    ALL_YOURS = 24
    WORK_EXCEPTION = 25
    OPTION_REQ = 26
    OPTION_RES = 27
    WORK_DATA = 28
    WORK_WARNING = 29
    GRAB_JOB_UNIQ = 30
    JOB_ASSIGN_UNIQ = 31
    SUBMIT_JOB_HIGH_BG = 32
    SUBMIT_JOB_LOW = 33
    SUBMIT_JOB_LOW_BG = 34
    SUBMIT_JOB_SCHED = 35
    SUBMIT_JOB_EPOCH = 36
    SUBMIT_REDUCE_JOB = 37
    SUBMIT_REDUCE_JOB_BACKGROUND = 38
    GRAB_JOB_ALL = 39
    JOB_ASSIGN_ALL = 40
    GET_STATUS_UNIQUE = 41
    STATUS_RES_UNIQUE = 42
    SUBMIT_JOB_RANKED = 64
    """spoolgear's own: a background job at any rank (``priorities.py``) and, unless its
    epoch is 0, delayed; gearmand closes the connection on it, as on any unknown type."""
    WORK_RETRY = 65
    """spoolgear's own, from a worker: this attempt of a job failed (handle, delay,
    reason); run the same job again ``delay`` seconds from now."""
    SUBMIT_JOB_KEYED = 66
    """spoolgear's own: SUBMIT_JOB_RANKED with a concurrency key (function, unique, key,
    rank, epoch, data), which flow rules with a per-key limit count."""
    WORK_CANCEL = 67
    """spoolgear's own, to a worker that asked for it (OPTION_REQ ``cancel-notices``): the
    job it runs (handle) was cancelled and its result will be discarded; stop it."""
    SUBMIT_JOB_AFTER = 68
    """spoolgear's own: a background job that runs after others (function, unique, after,
    data), ``after`` being ``chain`` or ``group`` and their handles, space-separated."""


T = PacketType

CANCEL_NOTICES = b"cancel-notices"
"""The OPTION_REQ a worker sends to be told (WORK_CANCEL) when its running job is
cancelled; gearmand answers it with ``ERROR UNKNOWN_OPTION``."""
MAX_KEY = 64
"""Bytes in a SUBMIT_JOB_KEYED concurrency key, as many as a unique may have."""

# Total number of arguments per type; the last one is the unterminated tail
# (an opaque payload where the type carries data). 0 = the body is ignored.
ARGUMENT_COUNTS: dict[PacketType, int] = {
    T.CAN_DO: 1,
    T.CANT_DO: 1,
    T.RESET_ABILITIES: 0,
    T.PRE_SLEEP: 0,
    T.UNUSED: 0,
    T.NOOP: 0,
    T.SUBMIT_JOB: 3,
    T.JOB_CREATED: 1,
    T.GRAB_JOB: 0,
    T.NO_JOB: 0,
    T.JOB_ASSIGN: 3,
    T.WORK_STATUS: 3,
    T.WORK_COMPLETE: 2,
    T.WORK_FAIL: 1,
    T.GET_STATUS: 1,
    T.ECHO_REQ: 1,
    T.ECHO_RES: 1,
    T.SUBMIT_JOB_BG: 3,
    T.ERROR: 2,
    T.STATUS_RES: 5,
    T.SUBMIT_JOB_HIGH: 3,
    T.SET_CLIENT_ID: 1,
    T.CAN_DO_TIMEOUT: 2,
    T.ALL_YOURS: 0,
    T.WORK_EXCEPTION: 2,
    T.OPTION_REQ: 1,
    T.OPTION_RES: 1,
    T.WORK_DATA: 2,
    T.WORK_WARNING: 2,
    T.GRAB_JOB_UNIQ: 0,
    T.JOB_ASSIGN_UNIQ: 4,
    T.SUBMIT_JOB_HIGH_BG: 3,
    T.SUBMIT_JOB_LOW: 3,
    T.SUBMIT_JOB_LOW_BG: 3,
    T.SUBMIT_JOB_SCHED: 8,
    T.SUBMIT_JOB_EPOCH: 4,
    T.SUBMIT_REDUCE_JOB: 5,
    T.SUBMIT_REDUCE_JOB_BACKGROUND: 5,
    T.GRAB_JOB_ALL: 0,
    T.JOB_ASSIGN_ALL: 5,
    T.GET_STATUS_UNIQUE: 1,
    T.STATUS_RES_UNIQUE: 6,
    T.SUBMIT_JOB_RANKED: 5,
    T.WORK_RETRY: 3,
    T.SUBMIT_JOB_KEYED: 6,
    T.WORK_CANCEL: 1,
    T.SUBMIT_JOB_AFTER: 4,
}

# Lookups indexed by type number, for the parser's hot path.
_COUNTS_BY_NUMBER: list[int] = [0] * (max(PacketType) + 1)
TYPES_BY_NUMBER: list[PacketType | None] = [None] * (max(PacketType) + 1)
for _type, _count in ARGUMENT_COUNTS.items():
    _COUNTS_BY_NUMBER[_type] = _count
    TYPES_BY_NUMBER[_type] = _type


class Packet(NamedTuple):
    """One binary packet: its magic, type and arguments (already split).

    A named tuple rather than a frozen dataclass: one is built per packet and
    tuple construction is several times cheaper.
    """

    magic: bytes
    type: PacketType
    args: tuple[bytes, ...]


def split_body(type_number: int, body: bytes) -> tuple[bytes, ...] | None:
    """Split a body into the type's arguments; ``None`` when NULs are missing."""
    count = _COUNTS_BY_NUMBER[type_number]
    if count == 0:
        return ()
    if count == 1:
        return (body,)
    args = body.split(b"\0", count - 1)
    if len(args) != count:
        return None
    return tuple(args)


def encode_packet(packet_type: int, *args: bytes, magic: bytes = MAGIC_RES) -> bytes:
    """Serialise one packet; arguments are joined with NUL, the last one unterminated."""
    body = b"\0".join(args)
    return HEADER.pack(magic, packet_type, len(body)) + body


# Response headers up to the size field, for the one-argument replies on hot paths.
_RESPONSE_PREFIXES = {kind: MAGIC_RES + kind.to_bytes(4, "big") for kind in PacketType}


def encode_response(packet_type: PacketType, arg: bytes) -> bytes:
    """``encode_packet`` for a server reply with a single argument, without the join."""
    return _RESPONSE_PREFIXES[packet_type] + len(arg).to_bytes(4, "big") + arg


def error_packet(code: bytes, text: bytes) -> bytes:
    """An ERROR response: gearmand's code word and its text."""
    return encode_packet(PacketType.ERROR, code, text)
