"""What a connection needs of the server, and nothing else (uvicorn's ``config,
server_state``): the protocols below see this, never the ``BrokerServer``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from broker.config import ServerConfig
from broker.core.access import Allowed
from broker.core.admin_commands import AdminCommands
from broker.core.broker import Broker
from broker.core.permissions import Permissions


class Tracked(Protocol):
    """A live Gearman connection, as the server's sweeps and shutdown see it."""

    def overdue(self, now: float) -> bool: ...

    def close_overdue(self) -> None: ...

    def close(self) -> None: ...


@dataclass(eq=False)
class ServerContext:
    config: ServerConfig
    broker: Broker
    admin: AdminCommands
    loop: asyncio.AbstractEventLoop
    end_turn_soon: Callable[[], None]
    """Call after feeding the broker: replies go out and the journal is committed once
    this loop turn's work is done."""
    after_commit: Callable[[int, Callable[[bool], None]], None]
    """``after_commit(batch, done)``: ``done(True)`` once journal batch ``batch`` is on
    disk, ``done(False)`` if the store failed first."""
    allowed: Allowed
    """Peers that may connect at all (``--allow``)."""
    permissions: Permissions | None = None
    """Which functions each certificate name may use (``--permissions``), re-read on
    SIGHUP for new connections; None: no limits."""
    connections: set[Tracked] = field(default_factory=set)
    buffered: int = 0
    """Bytes of started, incomplete packets held across connections."""
    spool_connections: int = 0
    """Open connections on the uwsgi doors (Gearman ones are ``connections``)."""
    bytes_in: int = 0
    bytes_out: int = 0
    """Bytes read from and written to peers on every door, since start-up."""
