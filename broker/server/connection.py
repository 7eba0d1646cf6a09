"""A thin ``asyncio.Protocol``: feed the reader and hand every complete event to the broker.

Replies are not written here: the broker buffers them per connection and the
server flushes once per event-loop turn (``end_turn_soon``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import select
import socket
from typing import cast

from broker.errors import ProtocolError
from broker.protocol.packets import error_packet
from broker.protocol.reader import PacketReader
from broker.server.context import ServerContext
from broker.tls import peer_names

log = logging.getLogger("spoolgear.connection")


def _readable(fd: int) -> bool:
    try:
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return False


class GearmanConnection(asyncio.Protocol):
    """One accepted connection. Reading pauses while the peer does not read our replies,
    and a peer that lets them pile up past ``--max-unread-output`` is cut off."""

    __slots__ = ("broker", "buffered", "context", "partial_since", "reader", "session", "transport")

    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self.broker = context.broker
        config = context.config
        self.reader = PacketReader(
            max_packet_size=config.max_packet_size, max_line_length=config.max_admin_line
        )
        self.partial_since: float | None = None
        """Since when (loop time) a started packet or line has waited for its end."""
        self.buffered = 0
        """Bytes of started packets held for this connection (in ``context.buffered``)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        peer = transport.get_extra_info("peername")  # None once the peer has reset
        host = "unix"
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            host = peer[0] if isinstance(peer, tuple) else "gone"
        self.transport.set_write_buffer_limits(high=self.context.config.max_output_buffer)
        fd = sock.fileno() if sock is not None else -1
        self.session = self.broker.connect(self._write, fd, host)
        if host not in self.context.allowed:
            log.warning("refused a connection from %s: not in --allow", host)
            self.transport.abort()  # connection_lost forgets the session
            return
        if sock is not None:
            self.session.has_input = functools.partial(_readable, sock.fileno())
        self.session.names = peer_names(transport.get_extra_info("peercert"))
        permissions = self.context.permissions
        if permissions is not None:
            self.session.permits = permissions.for_names(self.session.names)
        self.context.connections.add(self)

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(data)
        self.context.bytes_out += len(data)
        if transport.get_write_buffer_size() > self.context.config.max_unread_output:
            log.warning(
                "cutting off %s: %d reply bytes unread (--max-unread-output)",
                self.session.host,
                transport.get_write_buffer_size(),
            )
            transport.abort()

    def data_received(self, data: bytes) -> None:
        self.context.bytes_in += len(data)
        reader = self.reader
        broker = self.broker
        session = self.session
        reader.feed(data)
        completed = False
        while not session.closed:
            try:
                handled, admin_line = broker.handle_stream(session, reader)
            except ProtocolError as exc:
                if self._protocol_error(exc):
                    return
                completed = True
                continue
            completed = completed or handled > 0
            if admin_line is None:
                break
            try:
                reply = self.context.admin.run(session, admin_line.line)
            except ProtocolError as exc:
                self._protocol_error(exc)
                return
            broker.send(session, reply)
        if completed:
            self.context.end_turn_soon()
        pending = reader.pending
        if not pending:
            self.partial_since = None
        elif completed or self.partial_since is None:
            self.partial_since = self.context.loop.time()
        if pending != self.buffered:
            self._account(pending)

    def _account(self, pending: int) -> None:
        """Keep the broker-wide count of started packets' bytes; the connection that takes
        it past ``--max-pending-bytes`` is closed (many large packets at once)."""
        context = self.context
        context.buffered += pending - self.buffered
        self.buffered = pending
        if pending and context.buffered > context.config.max_pending_bytes:
            log.warning(
                "closing connection from %s: started packets hold %d bytes in all "
                "(--max-pending-bytes)",
                self.session.host,
                context.buffered,
            )
            self._account(0)
            self.transport.abort()

    def overdue(self, now: float) -> bool:
        """Whether a started packet or line has taken longer than ``--packet-timeout``."""
        started = self.partial_since
        return started is not None and now - started > self.context.config.packet_timeout

    def close_overdue(self) -> None:
        log.warning(
            "closing connection from %s: no complete packet within %s s (--packet-timeout)",
            self.session.host,
            self.context.config.packet_timeout,
        )
        self.transport.abort()

    def close(self) -> None:
        self.transport.close()

    def _protocol_error(self, exc: ProtocolError) -> bool:
        """Answer a protocol error; returns True when the connection was closed."""
        self.context.end_turn_soon()
        if exc.code:
            self.broker.send(self.session, error_packet(exc.code, str(exc).encode()))
        if not exc.close:
            return False
        log.info("closing connection from %s: %s", self.session.host, exc)
        self.broker.flush()
        self.transport.close()
        self.broker.disconnect(self.session)
        return True

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.context.connections.discard(self)
        self._account(0)
        if not self.session.closed:
            self.broker.disconnect(self.session)
            self.context.end_turn_soon()  # its jobs went back to their queues
