"""A job's state as the broker keeps it, as a Tasks framework ``TaskResult``.

The worker reports a failed attempt as ``module.ExceptionClass: message`` with the
traceback after it (``worker.py``); the broker keeps each attempt's report in order.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.utils import timezone
from django.utils.module_loading import import_string

from broker.gearman.admin_client import JobState
from django_jobs.sending.serialization import loads_call
from django_jobs.tasks_framework.framework import Task, TaskError, TaskResult, TaskResultStatus

STATUSES = {
    "queued": TaskResultStatus.READY,
    "running": TaskResultStatus.RUNNING,
    "successful": TaskResultStatus.SUCCESSFUL,
    "failed": TaskResultStatus.FAILED,
    "cancelled": TaskResultStatus.FAILED,
}


class ResultUnavailable(ValueError):
    """The broker knows the job but not enough of it to make a ``TaskResult`` of."""


def task_result(state: JobState, alias: str) -> TaskResult[Any]:
    if state.data is None:
        raise ResultUnavailable(
            f"job {state.handle}: its arguments ({state.data_size} bytes) were over the "
            "broker's --max-result-bytes, so the broker did not keep them"
        )
    call = loads_call(state.data)
    path = call.setup.get("task")
    task = _task(path, state.handle)
    result: TaskResult[Any] = TaskResult(
        task=task,
        id=state.handle,
        status=STATUSES[state.status],
        enqueued_at=aware(state.enqueued_at),
        started_at=aware(state.started_at),
        last_attempted_at=aware(state.last_started_at),
        finished_at=aware(state.finished_at),
        args=call.args,
        kwargs=call.kwargs,
        backend=alias,
        errors=[task_error(report) for report in state.errors],
        worker_ids=list(state.workers),
    )
    if state.status == "successful" and state.value:
        object.__setattr__(result, "_return_value", json.loads(state.value))
    return result


def _task(path: Any, handle: str) -> Task[Any, Any]:
    """The task a payload names, imported as Django's database backend does; anything
    but a task there is refused."""
    try:
        found = import_string(path) if isinstance(path, str) else None
    except ImportError:
        found = None
    if not isinstance(found, Task):
        raise ResultUnavailable(f"job {handle} names {path!r}, which is not a task here")
    return found


def task_error(report: str) -> TaskError:
    """``module.Class: message`` then the traceback; a report from elsewhere (a worker
    that died, a timeout) is kept whole as the traceback of a plain ``Exception``."""
    first, _, rest = report.partition("\n")
    path = first.partition(":")[0]
    if path and "." in path and " " not in path:
        return TaskError(exception_class_path=path, traceback=rest or first)
    return TaskError(exception_class_path="builtins.Exception", traceback=report)


def aware(epoch: float | None) -> dt.datetime | None:
    """Epoch seconds as Django keeps times: aware in UTC with ``USE_TZ``, else local."""
    if epoch is None:
        return None
    moment = dt.datetime.fromtimestamp(epoch, tz=dt.UTC)
    return moment if timezone.is_aware(timezone.now()) else timezone.make_naive(moment)
