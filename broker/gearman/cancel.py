"""Cancel notices: how a worker learns that the job it runs was cancelled, and stops it.

A worker that sends OPTION_REQ ``cancel-notices`` gets spoolgear's WORK_CANCEL when its
running job is cancelled (``cancel job``, ``spoolgear cancel``). While a job runs the
worker does not read its connection, so the notice is looked for without reading it:
the bytes waiting on the socket are peeked at (``MSG_PEEK``) and left for the worker's
loop, which drops the notice and the error its discarded result gets back.

The job stops cooperatively at its next progress report (``send_status``) or check
(``check_cancelled``), which raise ``JobCancelled``; with a grace period, a watch thread
looks every ``CANCEL_POLL_SECONDS`` and ends the whole process once the job has run that
long past its notice (supervisord or the pre-fork master starts a new one). Over TLS the
socket cannot be peeked at: the job runs to its end and its result is discarded.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from broker.protocol.packets import PacketType

if TYPE_CHECKING:
    from broker.gearman.worker import WorkerJob

log = logging.getLogger("spoolgear.worker")

DEFAULT_CANCEL_GRACE = 30.0
"""Seconds ``manage.py gearman_worker`` lets a cancelled job run on (``--cancel-grace``)."""
CANCEL_POLL_SECONDS = 0.2
"""How often the watch thread looks for a running job's cancel notice."""
PEEK_BYTES = 1 << 16
"""Bytes of waiting input looked through for a notice."""
CANCELLED_EXIT_STATUS = 75
"""The status a worker process ends with when a cancelled job outlived its grace period
(EX_TEMPFAIL: supervisord's ``autorestart=true`` and the pre-fork master start another)."""
_HEADER = struct.Struct(">4sII")


def notice_waiting(sock: socket.socket, handle: bytes) -> bool:
    """Whether a WORK_CANCEL for ``handle`` waits unread on ``sock`` (never over TLS)."""
    if isinstance(sock, ssl.SSLSocket):
        return False
    try:
        waiting = sock.recv(PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:  # nothing waiting, or the connection is gone: the loop will see
        return False
    offset = 0
    while offset + _HEADER.size <= len(waiting):
        _magic, kind, size = _HEADER.unpack_from(waiting, offset)
        body = waiting[offset + _HEADER.size : offset + _HEADER.size + size]
        if kind == PacketType.WORK_CANCEL and body == handle:
            return True
        offset += _HEADER.size + size
    return False


class CancelWatch:
    """Looks for the running job's cancel notice in the background, and ends the process
    ``grace`` seconds after it came if the job is still running."""

    def __init__(self, grace: float, *, end_process: Callable[[], None] | None = None) -> None:
        self.grace = grace
        self.end_process = end_process or _end_process
        self.job: WorkerJob | None = None
        """The job running now (set and cleared by the worker's loop)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="cancel-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        noticed: tuple[WorkerJob, float] | None = None
        while not self._stop.wait(CANCEL_POLL_SECONDS):
            job = self.job
            if job is None:
                noticed = None
                continue
            if noticed is None or noticed[0] is not job:
                noticed = (job, 0.0) if job.cancelled else None
                continue
            waited = noticed[1] + CANCEL_POLL_SECONDS
            noticed = (job, waited)
            if waited >= self.grace and self.job is job:
                log.error(
                    "job %s was cancelled %.1f s ago and is still running: ending this process",
                    job.handle,
                    waited,
                )
                self.end_process()


def _end_process() -> None:
    logging.shutdown()
    os._exit(CANCELLED_EXIT_STATUS)
