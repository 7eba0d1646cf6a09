"""Packets in which a worker says what it can do and when it sleeps: CAN_DO,
CAN_DO_TIMEOUT, CANT_DO, RESET_ABILITIES and PRE_SLEEP. Jobs a worker gives up go
back to the broker through ``release`` (most recently assigned first)."""

from __future__ import annotations

from collections.abc import Callable

from broker.core.functions import Functions
from broker.core.model import Job, Session
from broker.core.permissions import refusal
from broker.protocol.numbers import leading_int
from broker.protocol.packets import Packet, PacketType, encode_packet, error_packet

NOOP = encode_packet(PacketType.NOOP)

# CAN_DO_TIMEOUT values below one second are raised to one second, as in gearmand.
MIN_JOB_TIMEOUT = 1.0
# gearmand keeps CAN_DO_TIMEOUT in a 32-bit count of milliseconds (about 24.8 days).
MAX_JOB_TIMEOUT_MS = 2**31 - 1


class Abilities:
    def __init__(
        self,
        functions: Functions,
        send: Callable[[Session, bytes], None],
        release: Callable[[list[Job]], None],
    ) -> None:
        self.functions = functions
        self.send = send
        self.release = release

    def can_do(self, session: Session, packet: Packet) -> None:
        self.register(session, packet.args[0], None)

    def can_do_timeout(self, session: Session, packet: Packet) -> None:
        name, timeout_text = packet.args
        milliseconds = min(leading_int(timeout_text), MAX_JOB_TIMEOUT_MS)
        timeout = max(MIN_JOB_TIMEOUT, milliseconds / 1000) if milliseconds > 0 else None
        self.register(session, name, timeout)

    def register(self, session: Session, name: bytes, timeout: float | None) -> None:
        if session.permits is not None and not session.permits.allows("work", name):
            text = refusal("work", name, session.host, session.names)
            self.send(session, error_packet(b"PERMISSION_DENIED", text))
            return
        self.functions.add_worker(session, self.functions.get(name))
        if timeout is None:
            session.timeouts.pop(name, None)
        else:
            session.timeouts[name] = timeout

    def cant_do(self, session: Session, packet: Packet) -> None:
        function = self.functions.by_name.get(packet.args[0])
        if function is None or function not in session.positions:
            return
        self.functions.remove_worker(session, function)
        session.timeouts.pop(function.name, None)
        self.release([job for job in session.held.values() if job.function is function])

    def reset(self, session: Session, packet: Packet) -> None:
        self.forget(session)

    def forget(self, session: Session) -> None:
        """The session serves nothing any more; what it held goes back."""
        self.functions.remove_all(session)
        session.timeouts.clear()
        self.release(list(session.held.values()))

    def pre_sleep(self, session: Session, packet: Packet) -> None:
        if self.functions.has_work(session):
            session.noop_sent = True
            self.send(session, NOOP)
        else:
            session.sleeping = True
