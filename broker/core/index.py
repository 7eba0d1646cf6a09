"""Every live job, findable by handle, by coalescing key and by unique."""

from __future__ import annotations

from collections.abc import Mapping

from broker.core.model import Function, Job


def coalesce_key(name: bytes, unique: bytes, data: bytes) -> tuple[bytes, ...] | None:
    """The key under which submissions coalesce; ``None`` when they never do.

    Scoped by function. The unique ``-`` coalesces on the payload; an empty
    unique (or ``-`` with an empty payload) never coalesces.
    """
    if unique == b"-":
        return (name, b"-", data) if data else None
    return (name, unique) if unique else None


class JobIndex:
    def __init__(self, functions: Mapping[bytes, Function]) -> None:
        self.functions = functions
        self.jobs: dict[bytes, Job] = {}
        self.uniques: dict[tuple[bytes, ...], Job] = {}
        """By coalescing key: the job a submission with that key joins."""
        self.by_unique: dict[bytes, Job] = {}
        """By unique alone, for GET_STATUS_UNIQUE (not scoped by function)."""

    def add(self, job: Job, key: tuple[bytes, ...] | None) -> None:
        self.jobs[job.handle] = job
        if key is not None:
            job.coalesce_key = key
            self.uniques[key] = job
        if job.unique:
            self.by_unique[job.unique] = job  # the newest job wins, as in gearmand

    def add_stored(self, job: Job) -> None:
        """Index a job read from the store; it coalesces unless a live job holds its key."""
        key = coalesce_key(job.function.name, job.unique, job.data)
        self.add(job, None if key in self.uniques else key)

    def stop_coalescing(self, job: Job) -> None:
        """New submissions with the job's key make a new job from now on."""
        if job.coalesce_key is not None:
            del self.uniques[job.coalesce_key]
            job.coalesce_key = None

    def remove(self, job: Job) -> None:
        del self.jobs[job.handle]
        if job.coalesce_key is not None:
            del self.uniques[job.coalesce_key]
        unique = job.unique
        if unique and self.by_unique.get(unique) is job:
            # Point at another live job with the same unique, if any.
            del self.by_unique[unique]
            for name in self.functions:
                other = self.uniques.get((name, unique))
                if other is not None:
                    self.by_unique[unique] = other
                    return
