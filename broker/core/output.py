"""Replies on their way out: buffered per session, written once per event-loop turn.

Everything one turn produced for a connection (say, results from several workers
for one client) leaves in a single write. A session promised an acknowledgement
that must be durable first (JOB_CREATED of a stored job) is *gated* on a journal
batch: its output waits until that batch is committed, so a client never hears
"created" for a job a crash could still lose, and its replies keep their order.
"""

from __future__ import annotations

from broker.core.model import Session
from broker.protocol.packets import error_packet


class Output:
    def __init__(self) -> None:
        self.dirty: list[Session] = []
        """Sessions with output this turn."""
        self.gated: list[Session] = []
        """Sessions whose output waits for a batch to be committed."""
        self.committed = 0
        """Number of the last journal batch on disk (a gate at or below it is open)."""
        self.awaited = 0
        """The newest batch some session's output was gated on."""

    def gate(self, session: Session, batch: int) -> None:
        """Hold ``session``'s output (this turn's and later) until ``batch`` is committed."""
        session.gate = batch
        if batch > self.awaited:
            self.awaited = batch

    def send(self, session: Session, data: bytes) -> None:
        if session.closed:
            return
        if not session.out:
            self.dirty.append(session)
        session.out.append(data)

    def flush(self) -> None:
        """Hand every session's pending output to its transport, one write each."""
        dirty = self.dirty
        self.dirty = []
        committed = self.committed
        for session in dirty:
            if session.out and not session.closed:
                if session.gate > committed:
                    self.gated.append(session)
                    continue
                data = b"".join(session.out) if len(session.out) > 1 else session.out[0]
                session.out.clear()
                session.write(data)

    def release(self, batch: int) -> None:
        """Batch ``batch`` is on disk: what waited for it goes out at the next flush."""
        self.committed = batch
        self.dirty.extend(self.gated)
        self.gated = []

    def refuse_gated(self, text: bytes) -> None:
        """The store failed: each session waiting for a batch to reach the disk gets an
        ERROR instead of what it waited for (never a JOB_CREATED for a job not stored)."""
        self.flush()  # this turn's output joins the gated
        for session in self.gated:
            session.out.clear()
            if not session.closed:
                session.write(error_packet(b"STORE_FAILED", text))
        self.gated = []
