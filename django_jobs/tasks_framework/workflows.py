"""Chains and groups of Tasks framework tasks, held by the broker.

::

    from django_jobs.workflows import chain, group, step

    results = chain(step(fetch, url), step(parse), step(store)).enqueue()
    results = group(step(resize, 1), step(resize, 2), then=step(notify)).enqueue()

A step's task gets what it ran after as its first argument: in a chain, the previous
step's return value (a list of them after a group without ``then``); a group's ``then``,
the list of its members' ``TaskResult``, failed ones with their errors. The first step
gets nothing extra. A failed step stops the chain: the steps after it end ``FAILED``,
their error saying which step stopped them. Every step is a job on one broker, which keeps
the graph in its store (``broker/gearman/workflows.py``, ``broker/core/workflows.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from broker.gearman import workflows
from broker.gearman.admin_client import JobState
from broker.gearman.client import Client
from django_jobs.conf import job_settings
from django_jobs.jobs.discovery import check_module_served
from django_jobs.sending.serialization import dumps_call
from django_jobs.tasks_framework.backend import SpoolgearBackend, queue_function
from django_jobs.tasks_framework.framework import (
    InvalidTaskBackend,
    Task,
    TaskResult,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
)
from django_jobs.tasks_framework.results import task_result

WORKFLOW = "workflow"
"""The payload's mark of a step: the worker looks up what it ran after."""


@dataclass(frozen=True)
class TaskStep:
    task: Task[Any, Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class TaskChain:
    steps: Sequence[TaskFlow]

    def enqueue(self) -> list[TaskResult[Any]]:
        return enqueue(self)


@dataclass(frozen=True)
class TaskGroup:
    members: Sequence[TaskFlow]
    then: TaskStep | None = None

    def enqueue(self) -> list[TaskResult[Any]]:
        return enqueue(self)


TaskFlow = TaskStep | TaskChain | TaskGroup


def step(task: Task[Any, Any], *args: Any, **kwargs: Any) -> TaskStep:
    if not isinstance(task, Task):
        raise TypeError(
            f"{task!r} is not a Tasks framework task: chains and groups take django.tasks "
            "tasks (a django_jobs @task retries by queuing a new job, which a chain cannot "
            "follow)"
        )
    return TaskStep(task, args, kwargs)


def chain(*steps: TaskFlow) -> TaskChain:
    return TaskChain(steps)


def group(*members: TaskFlow, then: TaskStep | None = None) -> TaskGroup:
    return TaskGroup(members, then)


def enqueue(flow: TaskFlow) -> list[TaskResult[Any]]:
    """Queue every step on one broker of the tasks' backend; their results, in the order
    the steps were given (a group's ``then`` after its members)."""
    steps: list[TaskStep] = []
    graph = _graph(flow, steps)
    backend = _backend(steps)
    with Client(list(backend.servers), tls=job_settings().tls) as client:
        submitted = workflows.submit(client, graph)
    results = []
    for each, handle in zip(steps, submitted.jobs, strict=True):
        result: TaskResult[Any] = TaskResult(
            task=each.task,
            id=handle.handle,
            status=TaskResultStatus.READY,
            enqueued_at=timezone.now(),
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=list(each.args),
            kwargs=dict(each.kwargs),
            backend=backend.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(backend), task_result=result)
        results.append(result)
    return results


def _graph(flow: TaskFlow, steps: list[TaskStep]) -> workflows.Flow:
    """The broker's workflow of ``flow``, each step's payload made (and checked) here;
    ``steps`` gets every step in submission order."""
    if isinstance(flow, TaskStep):
        steps.append(flow)
        task = flow.task
        task.get_backend().validate_task(task)
        check_module_served(task.module_path, task.func.__module__)
        args, kwargs = normalize_json(list(flow.args)), normalize_json(flow.kwargs)
        payload = dumps_call(args, kwargs, setup={"task": task.module_path, WORKFLOW: True})
        return workflows.Step(queue_function(task.queue_name), payload)
    if isinstance(flow, TaskChain):
        return workflows.Chain([_graph(part, steps) for part in flow.steps])
    members = [_graph(member, steps) for member in flow.members]
    then = _graph(flow.then, steps) if flow.then is not None else None
    assert then is None or isinstance(then, workflows.Step)
    return workflows.Group(members, then)


def _backend(steps: list[TaskStep]) -> SpoolgearBackend:
    backends = {id(each.task.get_backend()): each.task.get_backend() for each in steps}
    backend = next(iter(backends.values()))
    if len(backends) != 1 or not isinstance(backend, SpoolgearBackend):
        raise InvalidTaskBackend(
            "every step of a chain or group must use one SpoolgearBackend (one broker holds "
            "the whole graph)"
        )
    return backend


def previous(backend: SpoolgearBackend, own: JobState) -> list[Any]:
    """What a step gets before its own arguments (see the module's docstring)."""
    if not own.after:
        return []
    states = [backend.job_state(handle) for handle in own.after]
    found = [state for state in states if state is not None]
    if own.after_mode == "group":
        return [[task_result(state, backend.alias) for state in found]]
    values = [json.loads(state.value) if state.value else None for state in found]
    return [values[0] if len(values) == 1 else values]
