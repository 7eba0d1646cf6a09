"""Running Tasks framework tasks in ``manage.py tasks_worker``: one Gearman function per
queue, whose jobs name the task to run.

Only tasks found in the modules discovery imports (each app's ``tasks.py`` and
``gearman_workers`` package) run: a job naming anything else fails, and is kept in the
broker's failed list, without being imported. ``task_started`` and ``task_finished`` are
sent here, around each run, with the ``TaskResult`` as this worker sees it.
"""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any

from django.utils import timezone

from broker.errors import JobCancelled, RetryLater, WorkFailed
from broker.gearman.admin_client import JobState
from broker.gearman.retries import log_retry
from broker.gearman.steps import current_job, time_limit
from broker.gearman.workflows import own_and_previous
from django_jobs.conf import job_settings
from django_jobs.jobs.discovery import discover
from django_jobs.jobs.registry import RegisteredTask
from django_jobs.sending.serialization import WORKFLOW, Call
from django_jobs.tasks_framework.backend import SpoolgearBackend, SpoolgearTask, queue_function
from django_jobs.tasks_framework.framework import (
    InvalidTaskBackend,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultStatus,
    get_exception_traceback,
    get_module_path,
    normalize_json,
    task_backends,
    task_finished,
    task_started,
)
from django_jobs.tasks_framework.results import task_result
from django_jobs.tasks_framework.workflows import previous
from django_jobs.worker.serve import WorkerProcess

log = logging.getLogger("django_jobs.tasks")


def serve_queues(process: WorkerProcess, alias: str, queues: list[str]) -> None:
    """Make ``process`` serve these queues of the backend ``alias`` too, from its brokers;
    ``ValueError`` says why it cannot."""
    try:
        backend = task_backends[alias]
    except InvalidTaskBackend as exc:
        raise ValueError(f"--tasks-backend {alias}: {exc}") from None
    if not isinstance(backend, SpoolgearBackend):
        raise ValueError(
            f"TASKS[{alias!r}] is {type(backend).__name__}, not "
            "django_jobs.backend.SpoolgearBackend: its tasks never reach a broker"
        )
    unknown = sorted(set(queues) - backend.queues) if backend.queues else []
    if unknown:
        raise ValueError(
            f"TASKS[{alias!r}] has no queue {', '.join(unknown)}; its QUEUES: "
            f"{', '.join(sorted(backend.queues))}"
        )
    if process.tasks and backend.servers != job_settings().worker_servers:
        raise ValueError(
            f"TASKS[{alias!r}]'s SERVERS are not GEARMAN_WORKER_SERVERS: serve its queues "
            "in a process of their own"
        )
    process.servers = backend.servers
    process.tasks += queue_tasks(backend, queues, process.client_id)


@functools.cache
def known_tasks() -> dict[str, Task[Any, Any]]:
    """Every task of the worker modules (imported now if ``GEARMAN_AUTODISCOVER`` left
    them), by module path."""
    found: dict[str, Task[Any, Any]] = {}
    for worker in discover():
        for value in vars(sys.modules[worker.module]).values():
            if isinstance(value, Task):
                found[value.module_path] = value
    return found


def queue_tasks(
    backend: SpoolgearBackend, queues: list[str], worker_id: str
) -> list[RegisteredTask]:
    """What the worker process serves for these queues: one entry per queue."""
    run = functools.partial(run_call, backend, worker_id)
    return [RegisteredTask(queue_function(queue), queue, run, run) for queue in queues]


def run_call(backend: SpoolgearBackend, worker_id: str, call: Call) -> Any:
    path = call.setup.get("task")
    task = known_tasks().get(path) if isinstance(path, str) else None
    if task is None:
        raise WorkFailed(
            f"refused: {path!r} is not a task of this project's worker modules (APP/tasks.py "
            "or APP/gearman_workers/); nothing was imported"
        )
    handle = current_job().handle
    arguments = call.args
    if call.setup.get(WORKFLOW):
        state, states = own_and_previous(current_job(), tls=job_settings().tls)
        arguments = [*previous(backend, state, states), *call.args]
    else:
        state = backend.job_state(handle) if task.takes_context else None
    result = _starting(backend, task, call, worker_id, state)
    task_started.send(type(backend), task_result=result)
    try:
        with time_limit(getattr(task, "time_limit", None), task.module_path):
            if task.takes_context:
                value = task.call(TaskContext(task_result=result), *arguments, **call.kwargs)
            else:
                value = task.call(*arguments, **call.kwargs)
        value = normalize_json(value)
    except JobCancelled:
        _finish(result, TaskResultStatus.FAILED)
        task_finished.send(type(backend), task_result=result)
        raise
    except Exception as exc:
        report = f"{get_module_path(type(exc))}: {exc}"
        traceback = get_exception_traceback(exc)
        result.errors.append(
            TaskError(exception_class_path=get_module_path(type(exc)), traceback=traceback)
        )
        if isinstance(task, SpoolgearTask) and task.retries:
            _retry_if_allowed(backend, task, state, report, traceback)
        _finish(result, TaskResultStatus.FAILED)
        task_finished.send(type(backend), task_result=result)
        current_job().send_warning(traceback)
        raise WorkFailed(report) from exc
    object.__setattr__(result, "_return_value", value)
    _finish(result, TaskResultStatus.SUCCESSFUL)
    task_finished.send(type(backend), task_result=result)
    return value


def _retry_if_allowed(
    backend: SpoolgearBackend,
    task: SpoolgearTask,
    state: JobState | None,
    report: str,
    traceback: str,
) -> None:
    """Raise ``RetryLater`` while ``task.retries`` allows another run: the broker runs
    the same job again after the backoff, counting the attempt (its count, which survives
    restarts, decides)."""
    state = state or backend.job_state(current_job().handle)
    attempt = state.attempts if state is not None else 1
    attempts = task.retries + 1
    if attempt < attempts:
        delay = task.retry_wait(attempt)
        log_retry(log, task.module_path, attempt, attempts, report, delay)
        raise RetryLater(f"{report}\n{traceback}", delay)


def _starting(
    backend: SpoolgearBackend,
    task: Task[Any, Any],
    call: Call,
    worker_id: str,
    state: JobState | None,
) -> TaskResult[Any]:
    """The result as it stands now: as the broker keeps it (``state``, looked up for a
    task that takes its context: its attempts so far), else from the job alone."""
    handle = current_job().handle
    if state is not None and state.data is not None:
        result = task_result(state, backend.alias)
        object.__setattr__(result, "status", TaskResultStatus.RUNNING)
        return result
    now = timezone.now()
    return TaskResult(
        task=task,
        id=handle,
        status=TaskResultStatus.RUNNING,
        enqueued_at=None,
        started_at=now,
        last_attempted_at=now,
        finished_at=None,
        args=call.args,
        kwargs=call.kwargs,
        backend=backend.alias,
        errors=[],
        worker_ids=[worker_id],
    )


def _finish(result: TaskResult[Any], status: TaskResultStatus) -> None:
    object.__setattr__(result, "status", status)
    object.__setattr__(result, "finished_at", timezone.now())
