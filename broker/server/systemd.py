"""systemd's readiness protocol: a ``Type=notify`` unit learns when the broker accepts
connections (``READY=1``, so units ordered after it start only then) and when it is
stopping (``STOPPING=1``). One datagram to ``$NOTIFY_SOCKET`` per state; nothing at all
when the variable is unset, i.e. when not started by systemd.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("spoolgear.server")


def notify(state: str) -> None:
    """Tell systemd ``state`` (``READY=1``...); a failure is logged, never raised: the
    broker runs the same whether or not anyone listens."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("could not tell systemd %r at $NOTIFY_SOCKET=%s: %s", state, address, exc)
