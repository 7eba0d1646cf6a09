"""Django's Tasks framework on spoolgear (the django-tasks backport; Django 6 needs Python
3.12): the backend's contract, real ``gearman_worker --tasks-queue`` processes, and the
results the broker keeps."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from django.utils import timezone
from django_tasks import TaskResultStatus, default_task_backend, task
from django_tasks.exceptions import InvalidTaskError, TaskResultDoesNotExist
from django_tasks.signals import task_enqueued

from broker.client import Client
from broker.worker import Worker, WorkerJob
from django_jobs.sending.serialization import dumps_call, loads_call
from tests.helpers import SPOOLGEAR, RunningBroker, run_broker, wait_until
from tests.with_django.project import WorkerProcess, gearman_worker, manage

RETRIES = ("--retry-failures", "django.tasks.default=3")


@pytest.fixture
def tasks_broker() -> Iterator[RunningBroker]:
    with run_broker(*RETRIES) as broker, override_settings(GEARMAN_SERVERS=[broker.address]):
        yield broker


@pytest.fixture
def worker(tasks_broker: RunningBroker, tmp_path: Path) -> Iterator[WorkerProcess]:
    signals = tmp_path / "signals.log"
    with gearman_worker(
        tasks_broker.address,
        "--tasks-queue",
        "default",
        "--tasks-queue",
        "reports",
        TASK_SIGNALS_LOG=str(signals),
    ) as process:
        yield process


def finished(result_id: str, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    from shop.tasks import add

    backend = add.get_backend()
    wait_until(lambda: backend.get_result(result_id).is_finished, timeout=timeout)
    return backend.get_result(result_id)


def test_a_task_runs_on_a_worker_and_its_result_is_read_back(
    worker: WorkerProcess, tmp_path: Path
) -> None:
    from shop.tasks import add

    sent = []
    task_enqueued.connect(lambda sender, task_result, **_: sent.append(task_result.id), weak=False)
    result = add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY and sent == [result.id]
    result.refresh()
    wait_until(lambda: (result.refresh(), result.is_finished)[1], "the task ran")
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 5
    assert result.args == [2, 3] and result.kwargs == {}
    assert len(result.worker_ids) == 1 and f":{worker.pid}:" in result.worker_ids[0]
    assert result.attempts == 1 and result.errors == []
    assert result.enqueued_at <= result.started_at <= result.finished_at  # type: ignore[operator]
    assert add.get_result(result.id).return_value == 5
    signals = (tmp_path / "signals.log").read_text().split()
    assert signals == [
        str(worker.pid),
        "RUNNING",
        result.id,
        str(worker.pid),
        "SUCCESSFUL",
        result.id,
    ]


def test_a_result_is_read_from_another_process(
    worker: WorkerProcess, tasks_broker: RunningBroker
) -> None:
    from shop.tasks import add

    result_id = finished(add.enqueue(20, 22).id).id
    script = (
        "from django_tasks import default_task_backend as b; "
        f"r = b.get_result({result_id!r}); print(r.status, r.return_value, r.task.name)"
    )
    shown = manage(tasks_broker.address, "shell", "-c", script)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[-1].split() == ["SUCCESSFUL", "42", "add"]


def test_a_task_failing_twice_then_succeeding_keeps_each_attempt(
    worker: WorkerProcess, tmp_path: Path
) -> None:
    from shop.tasks import flaky

    result = finished(flaky.enqueue(str(tmp_path / "counter")).id)
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 3
    assert result.attempts == 3 and len(result.worker_ids) == 3
    assert [error.exception_class_path for error in result.errors] == ["builtins.ValueError"] * 2
    assert "attempt 1 failed" in result.errors[0].traceback
    assert result.errors[0].exception_class is ValueError


def test_a_task_that_always_fails_ends_failed_with_its_errors(
    worker: WorkerProcess, tmp_path: Path
) -> None:
    from shop.tasks import flaky

    (tmp_path / "never").mkdir()
    failing = finished(flaky.enqueue(str(tmp_path / "never")).id)  # a directory: never readable
    assert failing.status == TaskResultStatus.FAILED and failing.attempts == 3
    assert {error.exception_class_path for error in failing.errors} == {
        "builtins.IsADirectoryError"
    }
    with pytest.raises(ValueError, match="failed"):
        failing.return_value  # noqa: B018


def test_retries_with_backoff_run_the_same_task_again_later(
    worker: WorkerProcess, tmp_path: Path
) -> None:
    from shop.tasks import hopeless, retried

    log = tmp_path / "attempts"
    result = finished(retried.enqueue(str(log)).id, timeout=60)
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 3
    assert result.attempts == 3 and len(result.worker_ids) == 3
    assert [error.exception_class_path for error in result.errors] == ["builtins.ValueError"] * 2
    assert "attempt 2 failed" in result.errors[1].traceback
    seen = [line.split() for line in log.read_text().splitlines()]
    assert [attempt for attempt, _ in seen] == ["1", "2", "3"]
    times = [float(moment) for _, moment in seen]
    # Lower bounds only: the first retry waits retry_delay, the second twice that.
    assert times[1] - times[0] >= 0.9 and times[2] - times[1] >= 1.9
    given_up = finished(hopeless.enqueue().id)
    assert given_up.status == TaskResultStatus.FAILED and given_up.attempts == 2
    assert {error.exception_class_path for error in given_up.errors} == {"builtins.RuntimeError"}


def test_a_chain_passes_return_values_and_a_group_callback_gets_every_result(
    worker: WorkerProcess,
) -> None:
    from shop.tasks import add, add_to, hopeless, summary

    from django_jobs.workflows import chain, group, step

    steps = chain(step(add, 2, 3), step(add_to, 10), step(add_to, 100)).enqueue()
    assert [result.task for result in steps] == [add, add_to, add_to]
    assert finished(steps[-1].id, timeout=30).return_value == 115
    grouped = group(step(add, 1, 1), step(hopeless), then=step(summary)).enqueue()
    assert finished(grouped[-1].id, timeout=30).return_value == [
        ["SUCCESSFUL", 2],
        ["FAILED", "builtins.RuntimeError"],
    ]
    stopped = chain(step(hopeless), step(add_to, 1)).enqueue()
    never = finished(stopped[-1].id, timeout=30)
    assert never.status == TaskResultStatus.FAILED and never.worker_ids == []
    assert f"chain stopped: {stopped[0].id}" in never.errors[0].traceback


def test_context_async_tasks_and_queues(worker: WorkerProcess, tmp_path: Path) -> None:
    from shop.tasks import double_later, introspect, stamp

    seen = finished(introspect.enqueue("on").id)
    assert seen.return_value == {"attempt": 1, "id": seen.id, "flag": "on"}
    assert finished(double_later.enqueue(21).id).return_value == 42
    log = tmp_path / "stamps"
    assert finished(stamp.enqueue(str(log), "reports queue").id).return_value == worker.pid
    assert log.read_text() == "reports queue\n"


def test_run_after_is_respected(worker: WorkerProcess, tmp_path: Path) -> None:
    from shop.tasks import stamp

    log = tmp_path / "stamps"
    later = timezone.now() + dt.timedelta(seconds=2)
    result = stamp.using(run_after=later).enqueue(str(log), "later")
    finished(stamp.enqueue(str(log), "now").id)
    done = finished(result.id)
    assert log.read_text() == "now\nlater\n"
    assert done.started_at >= later.replace(microsecond=0)  # type: ignore[operator]


def test_priorities_run_highest_first_all_201_of_them(
    tasks_broker: RunningBroker, tmp_path: Path
) -> None:
    from shop.tasks import stamp

    log = tmp_path / "stamps"
    priorities = [0, -100, 7, 100, -1, 1, 6, -50]
    ids = [stamp.using(priority=p).enqueue(str(log), str(p)).id for p in priorities]
    with gearman_worker(tasks_broker.address, "--tasks-queue", "reports"):
        wait_until(lambda: log.exists() and len(log.read_text().split()) == len(priorities))
    assert log.read_text().split() == [str(p) for p in sorted(priorities, reverse=True)]
    assert all(finished(result_id).status == TaskResultStatus.SUCCESSFUL for result_id in ids)


def test_a_concurrency_key_reaches_the_brokers_per_key_limit(
    tasks_broker: RunningBroker,
) -> None:
    """Two workers, three calls: the second call for one customer waits for the first
    while the other customer's runs (checked from the workers' own records)."""
    from shop.tasks import import_orders

    subprocess.run(
        [*SPOOLGEAR, "limit", "django.tasks.*", "--per-key", "1", "--server", tasks_broker.address],
        check=True,
        capture_output=True,
        timeout=30,
    )
    for customer, batch in (("acme", 1), ("acme", 2), ("bolt", 1)):
        import_orders.enqueue(customer, batch)
    runs: list[tuple[str, float, float]] = []
    workers = [Worker([tasks_broker.address]) for _ in range(2)]

    def run(job: WorkerJob) -> None:
        started = time.monotonic()
        time.sleep(0.3)
        runs.append((loads_call(job.data).args[0], started, time.monotonic()))
        if len(runs) == 3:
            for each in workers:
                each.stop()

    threads = []
    for each in workers:
        each.register("django.tasks.reports", run)
        threads.append(threading.Thread(target=each.work))
        threads[-1].start()
    for thread in threads:
        thread.join(timeout=60)
    for each in workers:
        each.close()
    acme = sorted((started, ended) for customer, started, ended in runs if customer == "acme")
    assert len(acme) == 2 and acme[1][0] >= acme[0][1]
    with pytest.raises(InvalidTaskError, match="concurrency_key 'who'"):
        import_orders.get_backend().task_class(func=import_orders.func, concurrency_key="who")


def test_a_running_task_is_cancelled_and_its_worker_goes_on(
    worker: WorkerProcess, tmp_path: Path
) -> None:
    from shop.tasks import add, patient

    result = patient.enqueue(60)
    backend = patient.get_backend()
    wait_until(lambda: backend.get_result(result.id).status == TaskResultStatus.RUNNING)
    assert backend.cancel(result.id) is True
    cancelled = finished(result.id)
    assert cancelled.status == TaskResultStatus.FAILED and cancelled.attempts == 1
    assert backend.job_state(result.id).status == "cancelled"  # type: ignore[union-attr]
    assert finished(add.enqueue(1, 2).id).return_value == 3  # the same worker, still there
    assert backend.cancel(result.id) is False
    signals = (tmp_path / "signals.log").read_text().split()
    assert signals[signals.index(result.id) - 2 :][:6] == [
        str(worker.pid),
        "RUNNING",
        result.id,
        str(worker.pid),
        "FAILED",
        result.id,
    ]


def test_unique_calls_coalesce_and_a_time_limit_cuts_a_run_off(worker: WorkerProcess) -> None:
    from shop.tasks import slow_unique, too_slow

    first, again = slow_unique.enqueue(1, "a"), slow_unique.enqueue(1, "a")
    other = slow_unique.enqueue(1, "b")
    assert first.id == again.id != other.id  # one job while the first is queued or running
    assert finished(first.id).return_value == "a" and finished(other.id).return_value == "b"
    cut = finished(too_slow.enqueue().id)
    assert cut.status == TaskResultStatus.FAILED and cut.attempts == 3  # the broker's retries
    paths = {error.exception_class_path for error in cut.errors}
    assert paths == {"broker.gearman.steps.TimeLimitExceeded"}
    assert "time limit of 0.5 s" in cut.errors[0].traceback
    with pytest.raises(InvalidTaskError, match="time_limit"):
        too_slow.get_backend().task_class(func=too_slow.func, time_limit=0)
    for wrong in ({"retries": -1}, {"retry_backoff": 0.5}, {"retry_jitter": 2}):
        with pytest.raises(InvalidTaskError, match=next(iter(wrong))):
            too_slow.get_backend().task_class(func=too_slow.func, **wrong)


def test_unknown_ids_and_refused_tasks(tasks_broker: RunningBroker) -> None:
    from shop.tasks import add

    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result("H:nowhere:1")
    with pytest.raises(InvalidTaskError, match="priority"):
        add.using(priority=101)
    with pytest.raises(InvalidTaskError, match="Queue 'mail' is not valid"):
        add.using(queue_name="mail")

    def local() -> None:
        pass

    local.__module__, local.__qualname__ = "tests.with_django.test_django_tasks", "local"
    unserved = task(local)
    with pytest.raises(ImproperlyConfigured, match=r"no `manage\.py gearman_worker` loads"):
        unserved.enqueue()


def test_a_job_naming_something_else_fails_without_being_imported(
    worker: WorkerProcess, tasks_broker: RunningBroker, tmp_path: Path
) -> None:
    marker = tmp_path / "imported"
    payload = dumps_call([f"touch {marker}"], {}, setup={"task": "os.system"})
    with Client([tasks_broker.address]) as client:
        handle = client.submit_background("django.tasks.default", payload)
        wait_until(lambda: client.job_state(handle).status == "failed")  # type: ignore[union-attr]
        state = client.job_state(handle)
    assert state is not None and "refused: 'os.system' is not a task" in state.errors[0]
    assert not marker.exists()


def test_options_and_worker_arguments_are_checked(tasks_broker: RunningBroker) -> None:
    from django_jobs.backend import SpoolgearBackend

    with pytest.raises(ImproperlyConfigured, match="does not know"):
        SpoolgearBackend("x", {"OPTIONS": {"SERVER": "127.0.0.1:4730"}})
    for args, message in (
        (["--tasks-queue", "mail"], "has no queue mail"),
        (["--tasks-queue", "default", "--tasks-backend", "nope"], "--tasks-backend nope"),
    ):
        done = manage(tasks_broker.address, "gearman_worker", *args)
        assert done.returncode == 1 and message in done.stderr, done.stderr
    assert os.environ.get("DJANGO_SETTINGS_MODULE") == "testsite.settings"
