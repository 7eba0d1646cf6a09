"""Chains and groups: jobs that run after other jobs, held by the broker.

A background job submitted with SUBMIT_JOB_AFTER names the jobs it runs after, and how.
``chain``: every one of them must succeed; the first that fails or is cancelled stops it,
and it ends failed, saying which job stopped it, without running (and so does whatever
runs after it). ``group``: it runs once every one of them has ended, whatever the outcome
(a group's callback, reading their results or errors from the broker). Until then it
waits in no queue, counted with the delayed jobs. Its wait is in the store (``run_at``
``WAITING`` and ``after``), and its release or stop is written in the batch that records
the end of the last job it waited for: a restart or a takeover neither loses a step nor
runs one twice.
"""

from __future__ import annotations

from collections.abc import Callable

from broker.core.handles import Handles
from broker.core.model import Job
from broker.store.operations import KeptResult

CHAIN = b"chain"
GROUP = b"group"
MODES = (CHAIN, GROUP)
MAX_AFTER = 1000
"""Jobs one job may run after (the members of a group)."""
SUCCESSFUL = "successful"
STOPPED = "chain stopped: "


def parse_after(after: bytes) -> tuple[bytes, list[int]]:
    """``b"chain 12 13"`` to its mode and job numbers."""
    mode, *numbers = after.split()
    return mode, [int(number) for number in numbers]


def after_handles(handles: Handles, job: Job) -> tuple[bytes, ...]:
    """The handles of the jobs ``job`` runs after (none for most jobs)."""
    return tuple(handles.of(number) for number in parse_after(job.after)[1]) if job.after else ()


class Workflows:
    """Which waiting jobs each held job has after it."""

    def __init__(self, handles: Handles) -> None:
        self.handles = handles
        self.dependents: dict[bytes, list[Job]] = {}
        """By the handle of a job still to end: the jobs waiting for it."""

    def link(
        self,
        job: Job,
        held: Callable[[bytes], bool],
        ended: Callable[[bytes], KeptResult | None],
    ) -> None:
        """Make ``job`` wait for those of its jobs still ``held``; one that ended already
        (``ended``: its kept result, None if gone) may stop a chain now."""
        mode, numbers = parse_after(job.after)
        for number in numbers:
            handle = self.handles.of(number)
            if held(handle):
                self.dependents.setdefault(handle, []).append(job)
                job.waiting += 1
                continue
            result = ended(handle)
            if mode == CHAIN and not job.stopped:
                if result is None:
                    job.stopped = f"{STOPPED}{handle.decode()} ended and its result is gone"
                elif result.status != SUCCESSFUL:
                    error = result.errors[-1] if result.errors else ""
                    job.stopped = _stopped_by(handle, result.function, result.status, error)
        if job.stopped:
            self.unlink(job)

    def unlink(self, job: Job) -> None:
        """Stop ``job`` waiting (it was cancelled, or a chain stopped)."""
        for number in parse_after(job.after)[1]:
            waiting = self.dependents.get(self.handles.of(number))
            if waiting is not None and job in waiting:
                waiting.remove(job)
                if not waiting:
                    del self.dependents[self.handles.of(number)]
        job.waiting = 0

    def ended(self, parent: Job, status: str, error: str) -> list[Job]:
        """``parent`` ended with ``status``: the jobs that now stop (``stopped`` set) or
        may run (they waited for nothing else)."""
        settled = []
        for child in self.dependents.pop(parent.handle, ()):
            if child.after.startswith(CHAIN) and status != SUCCESSFUL:
                child.stopped = _stopped_by(parent.handle, parent.function.name, status, error)
                self.unlink(child)
                settled.append(child)
                continue
            child.waiting -= 1
            if child.waiting == 0:
                settled.append(child)
        return settled


def _stopped_by(handle: bytes, function: bytes, status: str, error: str) -> str:
    """Why a chain stopped: where it did. A job stopped by a stopped job says the same as
    that one (the step that failed), however long the chain."""
    said = error.partition("\n")[0]
    if said.startswith(STOPPED):
        return said
    name = function.decode("utf-8", "replace")
    return f"{STOPPED}{handle.decode()} ({name}) {status}" + (f": {said}" if said else "")
