"""Chains and groups of jobs, submitted to one broker that holds the graph.

``chain(a, b, c)``: ``b`` runs once ``a`` succeeded, ``c`` once ``b`` did; a failure stops
the rest, which end failed saying where. ``Group([a, b], then=c)``: ``a`` and ``b`` run
side by side and ``c`` once both ended, whatever the outcome. They nest: a chain's step may
be a group, a group's member a chain. Every job is a background job on the broker that
takes the first one (``after`` handles must share a server), which keeps each job's wait
in its store (``broker/core/workflows.py``). A job reads what it ran after with
``previous_results``: their results and errors, as the broker keeps them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from broker.gearman.admin_client import AdminClient, JobState
from broker.gearman.client import Client, JobHandle
from broker.gearman.worker import WorkerJob
from broker.tls import TLSFiles


@dataclass(frozen=True)
class Step:
    """One job of a workflow."""

    function: str
    data: bytes = b""


@dataclass(frozen=True)
class Chain:
    steps: Sequence[Step | Chain | Group]


@dataclass(frozen=True)
class Group:
    members: Sequence[Step | Chain | Group]
    then: Step | None = None
    """The callback: runs once every member ended (without it, what comes after the
    group waits for every member to succeed)."""


Flow = Step | Chain | Group


@dataclass
class Submitted:
    """The handles of a submitted workflow: every job, and the ones it ends with."""

    jobs: list[JobHandle] = field(default_factory=list)
    last: list[JobHandle] = field(default_factory=list)


def chain(*steps: Flow) -> Chain:
    return Chain(steps)


def submit(client: Client, flow: Flow, *, after: Sequence[JobHandle] = ()) -> Submitted:
    """Submit ``flow`` (after ``after``, every one of which must succeed)."""
    done = Submitted()
    done.last = _submit(client, flow, list(after), "chain", done.jobs)
    return done


def _submit(
    client: Client, flow: Flow, after: list[JobHandle], mode: str, jobs: list[JobHandle]
) -> list[JobHandle]:
    if isinstance(flow, Step):
        if after:
            handle = client.submit_after(flow.function, flow.data, after=after, mode=mode)
        else:
            handle = client.submit_background(flow.function, flow.data)
        jobs.append(handle)
        return [handle]
    if isinstance(flow, Chain):
        for step in flow.steps:
            after = _submit(client, step, after, mode, jobs)
            mode = "chain"
        return after
    ends = [
        handle for member in flow.members for handle in _submit(client, member, after, mode, jobs)
    ]
    if flow.then is None:
        return ends
    return _submit(client, flow.then, ends, "group", jobs)


def previous_results(job: WorkerJob, *, tls: TLSFiles | None = None) -> list[JobState]:
    """What the running ``job`` ran after (a chain's previous step, a group's members), in
    order, as its broker keeps them; empty for a job that ran after nothing."""
    return own_and_previous(job, tls=tls)[1]


def leading_arguments(
    own: JobState | None,
    states: list[JobState],
    value: Callable[[bytes], Any],
    member: Callable[[JobState], Any],
) -> list[Any]:
    """What a step (``own``) gets before its own arguments, from the ``states`` of the
    jobs it ran after: nothing for a first step; after a group (``group`` mode), the list
    of those jobs, each as ``member`` makes it; in a chain, the previous step's result as
    ``value`` decodes it (a list of them after several)."""
    if own is None or not own.after:
        return []
    if own.after_mode == "group":
        return [[member(state) for state in states]]
    values = [value(state.value) if state.value else None for state in states]
    return [values[0] if len(values) == 1 else values]


def own_and_previous(
    job: WorkerJob, *, tls: TLSFiles | None = None
) -> tuple[JobState | None, list[JobState]]:
    """The running ``job``'s own state (its attempts, what it ran after and how), and
    ``previous_results``."""
    with AdminClient(job.server, tls=tls) as admin:
        own = admin.result(job.handle)
        states = [admin.result(handle) for handle in (own.after if own is not None else ())]
    return own, [state for state in states if state is not None]
