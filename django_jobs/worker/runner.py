"""Runs one Django task for a Gearman job: decode, call, encode, log.

Each job is logged on ``django_jobs.worker`` with its name, handle, duration
and outcome. A task that raises is logged with its traceback and its job
failed with WORK_EXCEPTION (the server turns that into WORK_FAIL for clients
that did not ask for exceptions). The worker's steps (``broker.gearman.steps``) look
after the database connections and ``current_job()`` around it.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable

from broker.errors import WorkFailed
from broker.gearman.steps import current_job
from broker.gearman.worker import WorkerJob
from django_jobs.jobs.registry import RegisteredTask
from django_jobs.sending.serialization import dumps_result, loads_call

log = logging.getLogger("django_jobs.worker")
__all__ = ["current_job", "job_runner"]


def job_runner(
    task: RegisteredTask, serializer: str, after_job: Callable[[], None] = lambda: None
) -> Callable[[WorkerJob], bytes]:
    """The worker callback for ``task``; ``after_job`` runs once each job is settled."""

    def run(job: WorkerJob) -> bytes:
        started = time.monotonic()
        try:
            result = dumps_result(task.execute(loads_call(job.data, serializer)), serializer)
        except Exception as exc:
            log.error(
                "job %s %s failed after %.1f ms",
                task.name,
                job.handle,
                (time.monotonic() - started) * 1000,
                exc_info=True,
            )
            if isinstance(exc, WorkFailed):
                raise
            # The traceback as a warning first: the broker adds it to the failed-list
            # record of a background job; the exception's line stays the report.
            job.send_warning(traceback.format_exc())
            report = "".join(traceback.format_exception_only(exc)).strip()
            raise WorkFailed(report) from exc
        finally:
            after_job()
        if log.isEnabledFor(logging.DEBUG):  # a record costs a third of a short job: -v 2
            elapsed = (time.monotonic() - started) * 1000
            log.debug("job %s %s done in %.1f ms", task.name, job.handle, elapsed)
        return result

    return run
