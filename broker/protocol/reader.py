"""Incremental reader for a Gearman byte stream that may mix binary packets and admin lines.

gearmand decides text versus binary per packet: a first byte other than NUL
starts an admin line that ends at ``\\n``. Everything is bounded: a header that
declares more than ``max_packet_size`` bytes, or a line longer than
``max_line_length`` without a newline, raises ``ProtocolError`` instead of
growing the buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.errors import ProtocolError
from broker.protocol.packets import (
    HEADER,
    HEADER_SIZE,
    MAGIC_REQ,
    MAGIC_RES,
    TYPES_BY_NUMBER,
    Packet,
    split_body,
)

# gearmand has no body limit (a 20 MiB submit was accepted); 64 MiB keeps that
# generous while stopping a header that claims 4 GiB from reserving memory.
DEFAULT_MAX_PACKET_SIZE = 64 * 1024 * 1024
# gearmand's admin lines must fit its 8 KiB receive buffer.
DEFAULT_MAX_LINE_LENGTH = 8192
_unpack_header = HEADER.unpack_from
_TYPE_LIMIT = len(TYPES_BY_NUMBER)
# Consumed bytes are dropped from the front of the buffer once this many pile up.
_COMPACT_AFTER = 64 * 1024


@dataclass(frozen=True, slots=True)
class AdminLine:
    """One admin text command, without its line ending."""

    line: bytes


class PacketReader:
    """Feed bytes with :meth:`feed`, take complete events with :meth:`next_event`.

    ``accept_text`` is true on the server side, where admin lines are allowed.
    """

    __slots__ = ("_buf", "_pos", "accept_text", "max_line_length", "max_packet_size")

    def __init__(
        self,
        *,
        accept_text: bool = True,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    ) -> None:
        # Usually the chunk just received, parsed in place (slicing bytes copies once);
        # a bytearray only while a partial packet waits for more data.
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self.accept_text = accept_text
        self.max_packet_size = max_packet_size
        self.max_line_length = max_line_length

    def feed(self, data: bytes) -> None:
        if self._pos == len(self._buf):
            self._buf = data
            self._pos = 0
            return
        if isinstance(self._buf, bytes):
            self._buf = bytearray(self._buf[self._pos :])
            self._pos = 0
        self._buf += data

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as an event."""
        return len(self._buf) - self._pos

    def next_event(self) -> Packet | AdminLine | None:
        """Return the next complete event, or ``None`` if more bytes are needed.

        Raises ``ProtocolError``. When its ``close`` is false the offending
        packet has been consumed and reading may continue.
        """
        buf = self._buf
        pos = self._pos
        available = len(buf) - pos
        if available == 0:
            return None
        if buf[pos] != 0:
            if not self.accept_text:
                raise ProtocolError(f"expected a packet, got text {bytes(buf[pos : pos + 16])!r}")
            return self._next_line(buf, pos, available)
        if available < HEADER_SIZE:
            return None
        magic, number, size = _unpack_header(buf, pos)
        if magic != MAGIC_REQ and magic != MAGIC_RES:
            raise ProtocolError(f"invalid magic {magic!r}")
        packet_type = TYPES_BY_NUMBER[number] if number < _TYPE_LIMIT else None
        if packet_type is None:
            raise ProtocolError(f"invalid packet type {number}")
        if size > self.max_packet_size:
            raise ProtocolError(
                f"packet of {size} bytes exceeds max-packet-size {self.max_packet_size}",
                code=b"ARGUMENT_TOO_LARGE",
            )
        end = pos + HEADER_SIZE + size
        if len(buf) < end:
            return None
        body = buf[pos + HEADER_SIZE : end]
        if isinstance(body, bytearray):
            body = bytes(body)
        self._consume(end)
        args = split_body(number, body)
        if args is None:
            raise ProtocolError(
                f"{packet_type.name} is missing arguments",
                code=b"INVALID_PACKET",
                close=False,
            )
        return Packet(magic, packet_type, args)

    def _next_line(self, buf: bytes | bytearray, pos: int, available: int) -> AdminLine | None:
        limit = self.max_line_length
        newline = buf.find(b"\n", pos, pos + limit + 1)
        if newline < 0:
            if available > limit:
                raise ProtocolError(f"admin line longer than {limit} bytes")
            return None
        end = newline - 1 if newline > pos and buf[newline - 1] == 0x0D else newline
        line = bytes(buf[pos:end])
        self._consume(newline + 1)
        return AdminLine(line)

    def _consume(self, end: int) -> None:
        buf = self._buf
        if end == len(buf):
            self._buf = b""
            self._pos = 0
        elif end > _COMPACT_AFTER and isinstance(buf, bytearray):
            del buf[:end]
            self._pos = 0
        else:
            self._pos = end
