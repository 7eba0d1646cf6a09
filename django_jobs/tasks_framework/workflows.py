"""Chains and groups of Tasks framework tasks, held by the broker.

::

    from django_jobs.workflows import chain, group, step

    results = chain(step(fetch, url), step(parse), step(store)).enqueue()
    results = group(step(resize, 1), step(resize, 2), then=step(notify)).enqueue()

A step is a Tasks framework task or a ``django_jobs.tasks`` ``@task`` function (SPOOLER or
AUTO executor). Its task gets what it ran after as its first argument: in a chain, the
previous step's return value (a list of them after a group without ``then``); a group's
``then``, the list of its members' ``TaskResult`` (a ``@task`` callback: their
``broker.admin.JobState``), failed ones with their errors. The first step gets nothing
extra. A step retries (``@task(retries=...)``, ``@task(retry_count=...)``) as the same job,
so what runs after it waits for its last attempt; a ``@task`` step's buffer does not carry
from one attempt to the next. A failed step stops the chain: the steps after it end ``FAILED``,
their error saying which step stopped them. Every step is a job on one broker, which keeps
the graph in its store (``broker/gearman/workflows.py``, ``broker/core/workflows.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from broker.gearman import workflows
from broker.gearman.admin_client import JobState
from broker.gearman.client import Client
from django_jobs.conf import job_settings
from django_jobs.jobs.discovery import check_module_served, check_served
from django_jobs.sending.serialization import WORKFLOW, dumps_call
from django_jobs.task_api.calls import TaskCall
from django_jobs.task_api.tasks import Task as TaskApiTask
from django_jobs.task_api.tasks import TaskExecutor
from django_jobs.tasks_framework.backend import SpoolgearBackend, enqueued, queue_function
from django_jobs.tasks_framework.framework import (
    InvalidTaskBackend,
    Task,
    TaskResult,
    normalize_json,
)
from django_jobs.tasks_framework.results import task_result


@dataclass(frozen=True)
class TaskStep:
    task: Task[Any, Any] | TaskApiTask
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class TaskChain:
    steps: Sequence[TaskFlow]

    def enqueue(self) -> list[TaskResult[Any] | TaskCall]:
        return enqueue(self)


@dataclass(frozen=True)
class TaskGroup:
    members: Sequence[TaskFlow]
    then: TaskStep | None = None

    def enqueue(self) -> list[TaskResult[Any] | TaskCall]:
        return enqueue(self)


TaskFlow = TaskStep | TaskChain | TaskGroup


def step(task: Task[Any, Any] | TaskApiTask, *args: Any, **kwargs: Any) -> TaskStep:
    if isinstance(task, TaskApiTask):
        if task.executor not in (TaskExecutor.SPOOLER, TaskExecutor.AUTO):
            raise TypeError(
                f"{task.name} runs with the {task.executor.name} executor: a step of a chain "
                "or group is a durable job (SPOOLER or AUTO)"
            )
    elif not isinstance(task, Task):
        raise TypeError(f"{task!r} is neither a Tasks framework task nor a django_jobs @task")
    return TaskStep(task, args, kwargs)


def chain(*steps: TaskFlow) -> TaskChain:
    return TaskChain(steps)


def group(*members: TaskFlow, then: TaskStep | None = None) -> TaskGroup:
    return TaskGroup(members, then)


def enqueue(flow: TaskFlow) -> list[TaskResult[Any] | TaskCall]:
    """Queue every step on one broker; one result per step, in the order the steps were
    given (a group's ``then`` after its members): a ``TaskResult`` for a Tasks framework
    task, a ``TaskCall`` for a ``@task`` function."""
    steps: list[TaskStep] = []
    graph = _graph(flow, steps)
    with Client(list(_servers(steps)), tls=job_settings().tls) as client:
        submitted = workflows.submit(client, graph)
    results: list[TaskResult[Any] | TaskCall] = []
    for each, handle in zip(steps, submitted.jobs, strict=True):
        if isinstance(each.task, TaskApiTask):
            call = TaskCall(each.task, list(each.args), dict(each.kwargs), each.task.setup.copy())
            call.handle = handle
            results.append(call)
            continue
        backend = each.task.get_backend()
        results.append(
            enqueued(backend, each.task, handle.handle, list(each.args), dict(each.kwargs))
        )
    return results


def _graph(flow: TaskFlow, steps: list[TaskStep]) -> workflows.Flow:
    """The broker's workflow of ``flow``, each step's payload made (and checked) here;
    ``steps`` gets every step in submission order."""
    if isinstance(flow, TaskStep):
        steps.append(flow)
        task = flow.task
        if isinstance(task, TaskApiTask):
            return _task_api_step(task, flow)
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


def _task_api_step(task: TaskApiTask, flow: TaskStep) -> workflows.Step:
    check_served(task.registered)
    settings = job_settings()
    setup = {**task.setup.to_wire(), WORKFLOW: True}
    payload = dumps_call(list(flow.args), dict(flow.kwargs), settings.serializer, setup)
    return workflows.Step(settings.wire_name(task.name), payload)


def _servers(steps: list[TaskStep]) -> tuple[str, ...]:
    """The brokers every step's task queues on (one holds the whole graph)."""
    found = set()
    for each in steps:
        if isinstance(each.task, TaskApiTask):
            found.add(job_settings().client_servers)
            continue
        backend = each.task.get_backend()
        if not isinstance(backend, SpoolgearBackend):
            raise InvalidTaskBackend(
                f"{each.task.module_path} uses {type(backend).__name__}: the steps of a chain "
                "or group queue on spoolgear (SpoolgearBackend)"
            )
        found.add(backend.servers)
    if len(found) != 1:
        raise InvalidTaskBackend(
            "the steps of a chain or group must queue on the same brokers (one holds the whole "
            f"graph), not {sorted(found)}"
        )
    return found.pop()


def previous(backend: SpoolgearBackend, own: JobState | None, states: list[JobState]) -> list[Any]:
    """What a step (``own``) gets before its own arguments, from the ``states`` of the
    jobs it ran after (see the module's docstring)."""
    return workflows.leading_arguments(
        own, states, json.loads, lambda state: task_result(state, backend.alias)
    )
