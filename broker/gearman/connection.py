"""Blocking socket plumbing shared by the Python client, worker and admin client."""

from __future__ import annotations

import socket
import ssl
import time

from broker.addresses import parse_address
from broker.errors import ConnectionFailed, JobTimeout
from broker.protocol.packets import Packet
from broker.protocol.reader import PacketReader

_READ_SIZE = 256 * 1024


def remaining(deadline: float | None) -> float | None:
    """Seconds left before ``deadline`` (a monotonic time), raising once it has passed."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise JobTimeout("timed out waiting for the server")
    return left


class Wire:
    """One TCP connection with a packet reader; every read honours a deadline. With
    ``tls`` (``TLSFiles.client_context()``) the connection is TLS, the broker's
    certificate checked against the host name in ``address``."""

    def __init__(
        self, address: str, *, connect_timeout: float = 5.0, tls: ssl.SSLContext | None = None
    ) -> None:
        self.address = address
        host, port = parse_address(address)
        self.endpoint = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        """The address with its port, for messages (``address`` may leave it out)."""
        try:
            self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as exc:
            raise ConnectionFailed(f"cannot connect to {self.endpoint}: {exc}") from exc
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            try:
                self.sock = tls.wrap_socket(self.sock, server_hostname=host)
            except (OSError, ssl.SSLError) as exc:
                self.sock.close()
                raise ConnectionFailed(f"TLS with {self.endpoint} failed: {exc}") from exc
        self.reader = PacketReader(accept_text=False)
        self._text = bytearray()

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, data: bytes) -> None:
        try:
            self.sock.settimeout(None)
            self.sock.sendall(data)
        except OSError as exc:
            raise ConnectionFailed(f"lost connection to {self.endpoint}: {exc}") from exc

    def _receive(self, deadline: float | None) -> bytes:
        self.sock.settimeout(remaining(deadline))
        try:
            data = self.sock.recv(_READ_SIZE)
        except TimeoutError:
            raise JobTimeout(f"timed out waiting for {self.address}") from None
        except OSError as exc:
            raise ConnectionFailed(f"lost connection to {self.endpoint}: {exc}") from exc
        if not data:
            raise ConnectionFailed(f"{self.endpoint} closed the connection")
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            # Decrypted bytes wait inside the TLS layer, where select() cannot see them.
            data += self.sock.recv(self.sock.pending())
        return data

    def read_packet(self, deadline: float | None = None) -> Packet:
        while True:
            event = self.reader.next_event()
            if event is not None:
                assert isinstance(event, Packet)
                return event
            self.reader.feed(self._receive(deadline))

    def read_available(self) -> None:
        """Feed whatever the socket has now (the worker's select loop calls this)."""
        self.reader.feed(self._receive(None))

    def read_line(self, deadline: float | None = None) -> bytes:
        """One admin reply line, without its ``\\n`` (a ``\\r`` before it is kept)."""
        while True:
            newline = self._text.find(b"\n")
            if newline >= 0:
                line = bytes(self._text[:newline])
                del self._text[: newline + 1]
                return line
            self._text += self._receive(deadline)

    def close(self) -> None:
        self.sock.close()
