"""A networked-spooling client: what uWSGI removed with ``uwsgi.send_message`` (issue #1937).

``send_spool(address, vars)`` sends one spool packet (modifier1 17) to a uWSGI
spooler or to spoolgear's ``--uwsgi-socket`` and says whether it was stored,
following uWSGI's reply rules (docs/uwsgi.md, "Packets").
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

from broker.addresses import uwsgi_address
from broker.errors import ConnectionFailed, ServerError
from broker.protocol.uwsgi import encode_spool

SPOOLED = b"\xff\x00\x00\x01"
REFUSED = b"\xff\x00\x00\x00"


def connect(address: str, timeout: float) -> socket.socket:
    """``HOST:PORT`` over TCP, anything with a ``/`` as a unix socket path."""
    target = uwsgi_address(address)
    try:
        if isinstance(target, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(target)
            return sock
        return socket.create_connection(target, timeout=timeout)
    except OSError as exc:
        raise ConnectionFailed(f"cannot reach uwsgi socket {address}: {exc}") from None


def send_spool(address: str, values: Mapping[bytes, bytes], *, timeout: float = 5.0) -> None:
    """Spool one request; raises ``ServerError`` if refused, ``ConnectionFailed`` if unanswered."""
    packet = encode_spool(values.items())
    with connect(address, timeout) as sock:
        try:
            sock.sendall(packet)
            reply = b""
            while len(reply) < 4 and (chunk := sock.recv(4 - len(reply))):
                reply += chunk
        except OSError as exc:
            raise ConnectionFailed(f"uwsgi socket {address}: {exc}") from None
    if reply == REFUSED:
        raise ServerError("REFUSED", "the spooler refused the request (see its log)")
    if reply != SPOOLED:
        raise ConnectionFailed(
            f"uwsgi socket {address} closed without storing the request "
            f"(answer {reply.hex() or 'none'})"
        )
