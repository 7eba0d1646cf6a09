"""TLS listeners (the Gearman port with ``--ssl``, a ``--suwsgi-socket``).

Connections are accepted here and secured before the door's protocol sees them,
for two reasons: a peer outside ``--allow`` is cut off before any TLS work, and a
failed handshake (no client certificate, one from an unknown CA, a plaintext client
on the TLS port) is logged with the peer's address, where asyncio's own listener
drops it silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable

from broker.server.context import ServerContext
from broker.tls import ServerTLS

log = logging.getLogger("spoolgear.tls")

# A failed accept (out of file descriptors, say) is retried after this long.
_ACCEPT_RETRY_SECONDS = 0.1
# Handshake failures are logged once per peer address per this many seconds: a client
# that retries in a loop (a plaintext libgearman worker, say) must not flood the log.
FAILURE_LOG_INTERVAL = 10.0
# Peers remembered for that; past it the memory is cleared.
_FAILURE_LOG_PEERS = 10_000


def bind(target: tuple[str, int] | str) -> socket.socket:
    """A listening, non-blocking socket on a TCP address or a unix socket path."""
    if isinstance(target, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(target)
        sock.listen(1024)
    else:
        host, port = target
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=1024)
    sock.setblocking(False)
    return sock


class FailureLog:
    """Handshake failures, one line per peer per ``FAILURE_LOG_INTERVAL`` with a count
    of the ones in between."""

    def __init__(self, door_name: str) -> None:
        self.door_name = door_name
        self.last: dict[str, float] = {}
        self.unreported: dict[str, int] = {}

    def report(self, host: str, error: BaseException, now: float) -> None:
        last = self.last.get(host)
        if last is not None and now - last < FAILURE_LOG_INTERVAL:
            self.unreported[host] = self.unreported.get(host, 0) + 1
            return
        if len(self.last) >= _FAILURE_LOG_PEERS:
            self.last.clear()
            self.unreported.clear()
        self.last[host] = now
        more = self.unreported.pop(host, 0)
        log.warning(
            "TLS handshake with %s on the %s failed: %s%s",
            host,
            self.door_name,
            str(error) or type(error).__name__,
            f" (and {more} more times since the last report)" if more else "",
        )


class TLSListener:
    """Accepts on ``sock``; each connection gets its handshake, then ``door()``."""

    def __init__(
        self,
        context: ServerContext,
        tls: ServerTLS,
        sock: socket.socket,
        door: Callable[[], asyncio.Protocol],
        door_name: str,
    ) -> None:
        self.context = context
        self.tls = tls
        self.sock = sock
        self.door = door
        self.failures = FailureLog(door_name)
        self.handshakes: set[asyncio.Task[None]] = set()
        self.accepting = context.loop.create_task(self._accept())

    async def _accept(self) -> None:
        loop = self.context.loop
        while True:
            try:
                connection, peer = await loop.sock_accept(self.sock)
            except OSError as exc:
                log.error("accepting on the %s: %s", self.failures.door_name, exc)
                await asyncio.sleep(_ACCEPT_RETRY_SECONDS)
                continue
            host = str(peer[0]) if isinstance(peer, tuple) else "unix"
            if host not in self.context.allowed:
                log.warning("refused a connection from %s: not in --allow", host)
                connection.close()
                continue
            task = loop.create_task(self._secure(connection, host))
            self.handshakes.add(task)
            task.add_done_callback(self.handshakes.discard)

    async def _secure(self, connection: socket.socket, host: str) -> None:
        try:
            await self.context.loop.connect_accepted_socket(
                self.door,
                connection,
                ssl=self.tls.listening,
                ssl_handshake_timeout=self.context.config.packet_timeout,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            self.failures.report(host, exc, self.context.loop.time())
            connection.close()

    def close(self) -> None:
        self.accepting.cancel()
        for task in self.handshakes:
            task.cancel()
        self.sock.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self.accepting
