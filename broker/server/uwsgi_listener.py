"""The uWSGI front door: spool packets (modifier1 17) in, uWSGI's 4-byte answer out.

One packet per connection, as in uWSGI (docs/uwsgi.md,
"Packets"): the header, then the declared vars block, then the broker stores
the job and answers ``ff 00 00 01`` once it is durable (``ff 00 00 00`` if it is
refused) and closes. A datasize above the configured limit, another modifier1
or a packet that does not arrive within the timeout closes the connection with
no answer. Bytes after the vars block are ignored. Unlike uWSGI, a malformed
vars block is refused instead of acknowledged and dropped later.

The job is submitted to the broker directly; its typed outcome (accepted, with
the journal batch that makes it durable, or refused) decides the answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from broker.core.model import Refused
from broker.protocol.priorities import spool_rank
from broker.protocol.spool_request import SpoolJob, SpoolRefused, spool_job
from broker.protocol.uwsgi import HEADER, SPOOL_MODIFIER
from broker.server.context import ServerContext

log = logging.getLogger("spoolgear.uwsgi")

SPOOLED = bytes([255, 0, 0, 1])
REFUSED = bytes([255, 0, 0, 0])

Answer = Callable[[bytes | None, str], None]
"""``answer(handle, "")`` once the job is stored, ``answer(None, why)`` if it was not."""


def submit_spool_job(context: ServerContext, job: SpoolJob, answer: Answer) -> None:
    """Submit ``job`` and answer once it is durable (or refused: a full queue, say)."""
    outcome = context.broker.submit(
        None, job.function, b"", job.payload, spool_rank(job.priority), True, when=job.when
    )
    context.end_turn_soon()
    if isinstance(outcome, Refused):
        answer(None, outcome.text.decode("utf-8", "replace"))
        return
    handle = outcome.handle
    context.after_commit(
        outcome.batch,
        lambda stored: answer(handle, "") if stored else answer(None, "the job store failed"),
    )


class SpoolConnection(asyncio.Protocol):
    """One connection on a ``--uwsgi-socket`` listener."""

    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self.config = context.config
        self.buffer = bytearray()
        self.size: int | None = None
        self.submitted = False
        self.answered = False
        self.host = "unix"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.context.spool_connections += 1
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.host = f"{peer[0]}:{peer[1]}"
        self.timer = asyncio.get_running_loop().call_later(
            self.config.uwsgi_timeout, self._timed_out
        )
        if isinstance(peer, tuple) and peer[0] not in self.context.allowed:
            self._drop("not in --allow")

    def data_received(self, data: bytes) -> None:
        self.context.bytes_in += len(data)
        if self.submitted:
            return  # anything after the packet is read and dropped, as uWSGI ignores it
        self.buffer += data
        if self.size is None:
            if len(self.buffer) < HEADER.size:
                return
            modifier1, size, _modifier2 = HEADER.unpack_from(self.buffer)
            if modifier1 != SPOOL_MODIFIER:
                self._drop(f"modifier1 {modifier1} is not a spool request (17)")
                return
            if size > self.config.uwsgi_max_size:
                self._drop(
                    f"request block of {size} bytes is over the limit of "
                    f"{self.config.uwsgi_max_size} (--uwsgi-max-size)"
                )
                return
            self.size = size
        end = HEADER.size + self.size
        if len(self.buffer) < end:
            return
        self.timer.cancel()
        self.transport.pause_reading()
        block = bytes(self.buffer[HEADER.size : end])
        self.buffer.clear()
        try:
            job = spool_job(block, b"", default_function=self.config.spool_function.encode())
        except SpoolRefused as exc:
            self.submitted = True
            self._answer(None, str(exc))
            return
        self.submitted = True
        submit_spool_job(self.context, job, self._answer)

    def _answer(self, handle: bytes | None, why: str) -> None:
        """Answer, then end our side and read until the sender closes: closing with its
        extra bytes unread would reset the connection and could destroy the answer, and a
        sender that then retries would store the job twice."""
        if handle is None:
            log.warning("refused a spool request from %s: %s", self.host, why)
        if self.transport.is_closing():
            return
        self.answered = True
        self.transport.write(REFUSED if handle is None else SPOOLED)
        self.context.bytes_out += len(SPOOLED)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.transport.resume_reading()
            self.timer = asyncio.get_running_loop().call_later(
                self.config.uwsgi_timeout, self.transport.close
            )
        else:
            self.transport.close()

    def eof_received(self) -> bool:
        return False  # the sender is done: close

    def _timed_out(self) -> None:
        self._drop(
            f"no complete spool packet within {self.config.uwsgi_timeout} s (--uwsgi-timeout)"
        )

    def _drop(self, reason: str) -> None:
        log.warning("closing uwsgi connection from %s without an answer: %s", self.host, reason)
        self.timer.cancel()
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.context.spool_connections -= 1
        self.timer.cancel()
        if self.submitted and not self.answered:
            log.warning("spool request from %s: the sender left before its answer", self.host)
