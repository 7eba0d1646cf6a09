"""Packets a worker sends about a job it holds before it ends: WORK_STATUS, WORK_DATA
and WORK_WARNING, forwarded unchanged to every client attached to the job."""

from __future__ import annotations

from collections.abc import Callable

from broker.core.model import Job, Session
from broker.protocol.numbers import leading_int
from broker.protocol.packets import Packet, PacketType, encode_packet, error_packet

Send = Callable[[Session, bytes], None]


def owned_job(session: Session, handle: bytes, text: bytes, send: Send) -> Job | None:
    """The job ``session`` holds under ``handle``, or None after a JOB_NOT_FOUND."""
    job = session.held.get(handle)
    if job is None:
        send(session, error_packet(b"JOB_NOT_FOUND", text))
    return job


class Progress:
    def __init__(self, send: Send) -> None:
        self.send = send

    def status(self, session: Session, packet: Packet) -> None:
        handle, numerator, denominator = packet.args
        job = owned_job(session, handle, b"Job given in work result not found", self.send)
        if job is None:
            return
        job.numerator = b"%d" % leading_int(numerator)
        job.denominator = b"%d" % leading_int(denominator)
        self._forward(job, packet)

    def forward(self, session: Session, packet: Packet) -> None:
        job = owned_job(session, packet.args[0], b"Job does not exist on server", self.send)
        if job is None:
            return
        if packet.type is PacketType.WORK_WARNING:
            session.warnings[job.handle] = packet.args[1]
        self._forward(job, packet)

    def _forward(self, job: Job, packet: Packet) -> None:
        if job.clients:
            data = encode_packet(packet.type, *packet.args)
            for client in job.clients:
                self.send(client, data)
