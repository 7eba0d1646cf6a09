"""``SpoolgearBackend``: Django's Tasks framework queuing on spoolgear.

``TASKS = {"default": {"BACKEND": "django_jobs.backend.SpoolgearBackend", "QUEUES":
[...], "OPTIONS": {"SERVERS": [...]}}}``. Each queue is one Gearman function
(``django.tasks.QUEUE``) that ``manage.py gearman_worker --tasks-queue QUEUE`` serves; a
task call is a background job whose payload names the task, and the broker keeps the
job's result (``--keep-results``), so ``get_result`` works from any process.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from broker.errors import ConnectionFailed
from broker.gearman.admin_client import AdminClient, JobState
from broker.gearman.client import MAX_UNIQUE
from broker.gearman.retries import backoff_delay
from broker.protocol.packets import MAX_KEY
from broker.protocol.priorities import task_rank
from django_jobs.conf import job_settings
from django_jobs.jobs.discovery import check_module_served
from django_jobs.sending.client import Job
from django_jobs.sending.submission import submit_background
from django_jobs.tasks_framework.framework import (
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
)
from django_jobs.tasks_framework.results import task_result

QUEUE_FUNCTION_PREFIX = "django.tasks."
OPTIONS = ("SERVERS",)


@dataclass(frozen=True, slots=True, kw_only=True)
class SpoolgearTask(Task[Any, Any]):
    """A task with spoolgear's options beyond the contract, which ``@task(...)`` hands to
    the backend's task class (Django 6.1, django-tasks 0.12)."""

    unique: bool | str = False
    """Coalesce calls as Gearman uniques do: while one job of this task is queued or
    running, another call with the same arguments (True), or with the same key (a string),
    gets that job and its result instead of a second job."""
    time_limit: float | None = None
    """Seconds one run may take; past it the run fails with
    ``broker.gearman.steps.TimeLimitExceeded`` and the broker's retries, if any, run it
    again (enforced with SIGALRM in the worker's main thread)."""
    concurrency_key: str | None = None
    """The name of an argument whose value is the call's concurrency key (a customer id,
    say): a flow rule's per-key limit (``spoolgear limit 'django.tasks.*' --per-key 2``)
    runs at most that many calls with one value at once."""
    retries: int = 0
    """Runs after a failed one: the same job (same id, each attempt and error in its
    result) runs again later, at most this many times, then fails for good."""
    retry_delay: float = 1.0
    """Seconds before the first retry."""
    retry_backoff: float = 2.0
    """Each further retry waits this many times longer than the one before."""
    retry_max_delay: float = 600.0
    """The longest wait before a retry (Celery's ``retry_backoff_max``)."""
    retry_jitter: float = 0.1
    """Each wait moves by up to this fraction of itself at random, so that jobs that
    failed together do not all retry together."""

    def retry_wait(self, attempt: int) -> float:
        """Seconds before the run after failed attempt number ``attempt`` (from 1)."""
        return backoff_delay(
            self.retry_delay,
            attempt,
            factor=self.retry_backoff,
            cap=self.retry_max_delay,
            jitter=self.retry_jitter,
        )


def concurrency_key(task: Task[Any, Any], args: Any, kwargs: Any) -> str:
    """The value of the argument ``task.concurrency_key`` names, as text ("" for none)."""
    name = getattr(task, "concurrency_key", None)
    if name is None:
        return ""
    try:
        bound = inspect.signature(task.func).bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{task.module_path}: {exc}") from None
    if name not in bound.arguments:
        raise InvalidTask(f"concurrency_key {name!r}: the call passes no {name!r} argument")
    value = str(bound.arguments[name])
    if not 0 < len(value.encode()) <= MAX_KEY:
        raise InvalidTask(f"a concurrency key is 1 to {MAX_KEY} bytes, got {value!r}")
    return value


def _validate_retries(task: SpoolgearTask) -> None:
    if not (isinstance(task.retries, int) and task.retries >= 0):
        raise InvalidTask(f"retries must be a whole number from 0, got {task.retries!r}")
    for name in ("retry_delay", "retry_max_delay"):
        value = getattr(task, name)
        if not (isinstance(value, int | float) and 0 <= value < math.inf):
            raise InvalidTask(f"{name} must be a number of seconds from 0, got {value!r}")
    if not (isinstance(task.retry_backoff, int | float) and 1 <= task.retry_backoff < math.inf):
        raise InvalidTask(f"retry_backoff must be a factor from 1, got {task.retry_backoff!r}")
    if not (isinstance(task.retry_jitter, int | float) and 0 <= task.retry_jitter <= 1):
        raise InvalidTask(f"retry_jitter must be a fraction from 0 to 1, got {task.retry_jitter!r}")


def enqueued(
    backend: BaseTaskBackend, task: Task[Any, Any], result_id: str, args: Any, kwargs: Any
) -> TaskResult[Any]:
    """The result of a task just queued (READY), ``task_enqueued`` sent for it."""
    result: TaskResult[Any] = TaskResult(
        task=task,
        id=result_id,
        status=TaskResultStatus.READY,
        enqueued_at=timezone.now(),
        started_at=None,
        last_attempted_at=None,
        finished_at=None,
        args=args,
        kwargs=kwargs,
        backend=backend.alias,
        errors=[],
        worker_ids=[],
    )
    task_enqueued.send(type(backend), task_result=result)
    return result


def queue_function(queue_name: str) -> str:
    """The Gearman function of a queue: what the backend submits to, the worker serves."""
    return QUEUE_FUNCTION_PREFIX + queue_name


class SpoolgearBackend(BaseTaskBackend):
    task_class = SpoolgearTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    # All 201, as ranks (SUBMIT_JOB_RANKED); priority 0 goes as a plain Gearman job.
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        unknown = sorted(set(self.options) - set(OPTIONS))
        if unknown:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS'] has {', '.join(unknown)}, which "
                f"SpoolgearBackend does not know (it takes {', '.join(OPTIONS)})"
            )
        servers: Sequence[str] | None = self.options.get("SERVERS")
        if servers is not None and (isinstance(servers, str) or not servers):
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']['SERVERS'] must be a list of host:port, "
                f"got {servers!r}"
            )
        self._servers = tuple(servers) if servers is not None else None

    @property
    def servers(self) -> tuple[str, ...]:
        """OPTIONS' SERVERS, else the project's ``GEARMAN_CLIENT_SERVERS``."""
        return self._servers or job_settings().client_servers

    def validate_task(self, task: Task[Any, Any]) -> None:
        super().validate_task(task)
        time_limit = getattr(task, "time_limit", None)
        if time_limit is not None and not time_limit > 0:
            raise InvalidTask(f"time_limit must be a number of seconds above 0, got {time_limit!r}")
        if isinstance(task, SpoolgearTask):
            _validate_retries(task)
            key = task.concurrency_key
            if key is not None and key not in inspect.signature(task.func).parameters:
                raise InvalidTask(f"concurrency_key {key!r} is not an argument of the task")
        unique = getattr(task, "unique", False)
        if isinstance(unique, str) and not 0 < len(unique.encode()) <= MAX_UNIQUE:
            raise InvalidTask(f"a unique key is 1 to {MAX_UNIQUE} bytes, got {unique!r}")

    def enqueue(self, task: Task[Any, Any], args: Any, kwargs: Any) -> TaskResult[Any]:
        self.validate_task(task)
        check_module_served(task.module_path, task.func.__module__)
        args, kwargs = normalize_json(args), normalize_json(kwargs)
        job = Job(
            queue_function(task.queue_name),
            args,
            kwargs,
            at=task.run_after,
            setup={"task": task.module_path},
            rank=task_rank(task.priority) if task.priority else None,
            unique=getattr(task, "unique", False) or None,
            key=concurrency_key(task, args, kwargs),
        )
        handle = submit_background(job, self.servers)
        return enqueued(self, task, handle.handle, args, kwargs)

    def get_result(self, result_id: str) -> TaskResult[Any]:
        """From the first configured broker that knows the job (with a shared PostgreSQL
        store, any of them does)."""
        state = self.job_state(result_id)
        if state is None:
            raise TaskResultDoesNotExist(result_id)
        return task_result(state, self.alias)

    def cancel(self, result_id: str) -> bool:
        """Cancel a task that is queued or running (spoolgear's own: not in Django's
        contract): it never runs (again), a worker running it stops, and its result is
        ``FAILED`` with no return value. False when no broker has it any more."""
        tls = job_settings().tls
        for server in self.servers:
            with AdminClient(server, tls=tls) as admin:
                if admin.cancel(result_id):
                    return True
        return False

    def job_state(self, result_id: str) -> JobState | None:
        """The job's state from the first broker that knows it; None if every broker
        answered that it does not. A broker that cannot be reached is skipped, and its
        error raised if no other knows the job."""
        tls = job_settings().tls
        unreachable: ConnectionFailed | None = None
        for server in self.servers:
            try:
                with AdminClient(server, tls=tls) as admin:
                    state = admin.result(result_id)
            except ConnectionFailed as exc:
                unreachable = exc
                continue
            if state is not None:
                return state
        if unreachable is not None:
            raise unreachable
        return None


__all__ = ["SpoolgearBackend", "SpoolgearTask", "queue_function"]
