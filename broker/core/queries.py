"""Packets that ask about a job or set up the session, and change no job: GET_STATUS,
GET_STATUS_UNIQUE, ECHO_REQ, OPTION_REQ and SET_CLIENT_ID."""

from __future__ import annotations

from collections.abc import Callable

from broker.core.index import JobIndex
from broker.core.model import Session
from broker.core.other_brokers import OtherBrokers
from broker.core.paging import Paging
from broker.protocol.packets import (
    CANCEL_NOTICES,
    Packet,
    PacketType,
    encode_packet,
    error_packet,
)

T = PacketType

# gearmand truncates SET_CLIENT_ID to 127 bytes.
MAX_CLIENT_ID_SIZE = 127


class Queries:
    def __init__(
        self,
        index: JobIndex,
        pager: Paging,
        other_brokers: OtherBrokers,
        send: Callable[[Session, bytes], None],
    ) -> None:
        self.index = index
        self.pager = pager
        self.other_brokers = other_brokers
        self.send = send

    def get_status(self, session: Session, packet: Packet) -> None:
        handle = packet.args[0]
        job = self.index.jobs.get(handle)
        if job is None:
            row = self.pager.find(handle) or self.other_brokers.job(handle)
            known = b"0" if row is None else b"1"
            running = b"1" if row is not None and row.running else b"0"
            reply = encode_packet(T.STATUS_RES, handle, known, running, b"0", b"0")
        else:
            running = b"1" if job.worker is not None else b"0"
            reply = encode_packet(
                T.STATUS_RES, handle, b"1", running, job.numerator, job.denominator
            )
        self.send(session, reply)

    def get_status_unique(self, session: Session, packet: Packet) -> None:
        unique = packet.args[0]
        job = self.index.by_unique.get(unique)
        if job is None:
            known = b"0" if self.pager.find_unique(unique) is None else b"1"
            reply = encode_packet(T.STATUS_RES_UNIQUE, unique, known, b"0", b"0", b"0", b"0")
        else:
            running = b"1" if job.worker is not None else b"0"
            reply = encode_packet(
                T.STATUS_RES_UNIQUE,
                unique,
                b"1",
                running,
                job.numerator,
                job.denominator,
                b"%d" % len(job.clients),
            )
        self.send(session, reply)

    def echo(self, session: Session, packet: Packet) -> None:
        self.send(session, encode_packet(T.ECHO_RES, packet.args[0]))

    def option(self, session: Session, packet: Packet) -> None:
        name = packet.args[0]
        if name.lower() == b"exceptions":
            session.exceptions = True
            self.send(session, encode_packet(T.OPTION_RES, name))
        elif name.lower() == CANCEL_NOTICES:
            session.cancel_notices = True
            self.send(session, encode_packet(T.OPTION_RES, name))
        else:
            self.send(
                session, error_packet(b"UNKNOWN_OPTION", b"Server does not recognize given option")
            )

    def set_client_id(self, session: Session, packet: Packet) -> None:
        session.client_id = packet.args[0][:MAX_CLIENT_ID_SIZE] or b"-"
        named = session.client_id != b"-"
        session.label = session.client_id.decode("utf-8", "replace") if named else session.host
