"""``@task`` functions outside ``gearman_workers``, as uwsgi_tasks projects keep them
(``apps/index/tasks.py``): served by ``gearman_worker -a shop -n tasks``; and tasks of
Django's Tasks framework, served by ``gearman_worker --tasks-queue QUEUE``."""

import asyncio
import os
from pathlib import Path

from django.dispatch import receiver
from django_tasks import TaskContext
from django_tasks import task as framework_task
from django_tasks.signals import task_finished, task_started

from django_jobs.tasks import task


@task
def ping():
    return "pong"


@framework_task
def add(a, b):
    return a + b


@framework_task(queue_name="reports")
def stamp(path, label):
    """Appends ``label``: the tests see whether, and in what order, runs happened."""
    with open(path, "a") as out:
        out.write(f"{label}\n")
    return os.getpid()


@framework_task
def flaky(counter):
    """Fails until its third attempt, counting attempts in a file."""
    path = Path(counter)
    attempt = len(path.read_text()) + 1 if path.exists() else 1
    path.write_text("x" * attempt)
    if attempt < 3:
        raise ValueError(f"attempt {attempt} failed")
    return attempt


@framework_task(
    queue_name="reports",
    takes_context=True,
    retries=2,
    retry_delay=1.0,
    retry_backoff=2,
    retry_jitter=0,
)
def retried(context: TaskContext, log):
    """Fails its first two attempts, noting each attempt's number and time (retries with
    backoff: the same job runs again 1 s, then 2 s, after a failure)."""
    import time

    with open(log, "a") as out:
        out.write(f"{context.attempt} {time.time()}\n")
    if context.attempt < 3:
        raise ValueError(f"attempt {context.attempt} failed")
    return context.attempt


@framework_task(queue_name="reports", retries=1, retry_delay=0)
def hopeless():
    raise RuntimeError("never works")


@framework_task(queue_name="reports", concurrency_key="customer")
def import_orders(customer, batch):
    """A flow rule's per-key limit counts its runs per ``customer``."""
    return f"{customer}:{batch}"


@framework_task(queue_name="reports")
def patient(seconds):
    """Waits, checking now and then whether it was cancelled."""
    import time

    from broker.gearman.steps import current_job

    for _ in range(int(seconds * 20)):
        time.sleep(0.05)
        current_job().check_cancelled()
    return "waited"


@framework_task
def add_to(previous, n):
    """A chain's step: the previous step's return value comes first."""
    return previous + n


@framework_task
def summary(results):
    """A group's callback: its members' TaskResults, failed ones with their errors."""
    return [
        [
            result.status.value,
            result.return_value
            if result.is_finished and not result.errors
            else result.errors[-1].exception_class_path,
        ]
        for result in results
    ]


@framework_task(unique=True)
def slow_unique(seconds, label):
    """Coalesces with a queued or running call of the same arguments."""
    import time

    time.sleep(seconds)
    return label


@framework_task(time_limit=0.5)
def too_slow():
    import time

    time.sleep(30)


@framework_task(takes_context=True)
def introspect(context: TaskContext, flag):
    return {"attempt": context.attempt, "id": context.task_result.id, "flag": flag}


@framework_task
async def double_later(x):
    await asyncio.sleep(0)
    return 2 * x


@receiver(task_started)
@receiver(task_finished)
def _signal_log(sender, task_result, **kwargs):
    """Where the worker's signals fire: a line per signal in $TASK_SIGNALS_LOG, if set."""
    log = os.environ.get("TASK_SIGNALS_LOG")
    if log:
        with open(log, "a") as out:
            out.write(f"{os.getpid()} {task_result.status} {task_result.id}\n")
