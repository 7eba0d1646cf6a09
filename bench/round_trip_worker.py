"""The floor of any worker that holds one job at a time: a raw socket that answers each
job with an empty WORK_COMPLETE and the next GRAB_JOB in one write, decoding nothing and
calling nothing. ``bench/django_worker.py`` runs it beside the real workers, so a
target for one-job-at-a-time workers can be read against what a round trip through the
broker allows on the machine.

Usage: ``python bench/round_trip_worker.py HOST:PORT`` (runs until killed).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pygearman_worker import TASK_NAME

from broker.protocol.packets import HEADER, MAGIC_REQ, encode_packet
from broker.protocol.packets import PacketType as T

GRAB = encode_packet(T.GRAB_JOB, magic=MAGIC_REQ)
ANSWERS = {T.NO_JOB: encode_packet(T.PRE_SLEEP, magic=MAGIC_REQ), T.NOOP: GRAB}


def next_packet(sock: socket.socket, pending: bytes) -> tuple[int, bytes, bytes]:
    """(type, body, what is left) of the next packet, reading as much as it needs."""
    while len(pending) < HEADER.size or len(pending) < HEADER.size + HEADER.unpack_from(pending)[2]:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit(0)
        pending += chunk
    _, kind, size = HEADER.unpack_from(pending)
    end = HEADER.size + size
    return kind, pending[HEADER.size : end], pending[end:]


def serve(address: str) -> None:
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(encode_packet(T.CAN_DO, TASK_NAME, magic=MAGIC_REQ) + GRAB)
    pending = b""
    while True:
        kind, body, pending = next_packet(sock, pending)
        if kind == T.JOB_ASSIGN:
            handle = body.split(b"\0", 1)[0]
            sock.sendall(encode_packet(T.WORK_COMPLETE, handle, b"", magic=MAGIC_REQ) + GRAB)
        elif kind in ANSWERS:
            sock.sendall(ANSWERS[T(kind)])


if __name__ == "__main__":
    serve(sys.argv[1])
