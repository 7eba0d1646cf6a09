"""The ``@task`` API: executors, retries with a buffer, the failed list, introspection."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from broker.admin import AdminClient
from broker.errors import ConnectionFailed
from django_jobs.checks import check_tasks
from django_jobs.tasks import TaskExecutor, get_current_task, task
from tests.helpers import RunningBroker, free_port, wait_until
from tests.with_django.project import WorkerProcess, gearman_worker


@pytest.fixture
def tasks_worker(broker: RunningBroker) -> Iterator[WorkerProcess]:
    with (
        gearman_worker(broker.address, "-a", "shop", "-n", "feeds") as worker,
        override_settings(GEARMAN_CLIENT_SERVERS=[broker.address]),
    ):
        yield worker


def test_a_retry_chain_carries_its_buffer_across_attempts(
    tasks_worker: WorkerProcess, tmp_path: Path
) -> None:
    from shop.gearman_workers.feeds import flaky

    report = tmp_path / "report.json"
    call = flaky(str(report))
    assert call.handle is not None, "queued on the broker, not run inline"
    wait_until(lambda: report.exists() and report.read_text() != "")  # written, not just made
    assert json.loads(report.read_text()) == {"attempts": [1, 2, 3]}
    log = tasks_worker.output()
    assert "shop.feeds.flaky attempt 1 of 4: RetryTaskException; again in 0.2 s" in log
    assert "shop.feeds.flaky attempt 2 of 4: RetryTaskException; again in 0.4 s" in log


def test_an_exception_is_retried_then_lands_in_the_failed_list(
    broker: RunningBroker, tasks_worker: WorkerProcess
) -> None:
    from shop.gearman_workers.feeds import broken_feed

    broken_feed("https://example.com/feed")
    with AdminClient(broker.address) as admin:
        wait_until(lambda: bool(admin.show_failed()))
        (failed,) = admin.show_failed()
    assert failed.function == "shop.feeds.broken_feed"
    assert "failed on attempt 2 of 2" in failed.error
    assert "Traceback" in failed.error
    assert "ValueError: broken feed https://example.com/feed" in failed.error


def test_calling_the_current_task_from_anywhere_reenqueues_it(
    tasks_worker: WorkerProcess, tmp_path: Path
) -> None:
    from shop.gearman_workers.feeds import countdown

    notes = tmp_path / "notes"
    countdown(2, str(notes))
    wait_until(lambda: notes.exists() and len(notes.read_text().splitlines()) == 3)
    assert notes.read_text().splitlines() == [
        f"shop.feeds.countdown 1 [{n}, '{notes}']" for n in (2, 1, 0)
    ]


def test_runtime_runs_inline_and_apply_returns_the_result() -> None:
    seen = []

    @task(executor=TaskExecutor.RUNTIME, name="tests.inline_double", retry_count=2)
    def double(x: int) -> int:
        current = get_current_task()
        assert current is not None
        seen.append((current.attempt, current.retry_count))
        return 2 * x

    assert double(4).result == 8
    assert double.apply(5) == 10
    assert seen == [(1, 2), (1, 2)]
    assert get_current_task() is None


def test_auto_runs_inline_only_when_no_server_answers() -> None:
    from shop.tasks import ping

    down = [f"127.0.0.1:{free_port()}"]
    with override_settings(GEARMAN_CLIENT_SERVERS=down):
        call = ping()
        assert (call.handle, call.result) == (None, "pong")
        with (
            override_settings(GEARMAN_TASKS_INLINE_FALLBACK=False),
            pytest.raises(ConnectionFailed),
        ):
            ping.delay()


def test_a_task_no_worker_loads_is_refused_at_the_call_and_named_by_check() -> None:
    @task(name="tests.nowhere")
    def nowhere() -> None: ...

    with pytest.raises(
        ImproperlyConfigured,
        match=r"'tests\.nowhere' is defined in "
        r"tests\.with_django\.test_tasks, which no",
    ):
        nowhere()
    assert "tests.nowhere" in [
        message.obj for message in check_tasks() if message.id == "django_jobs.W001"
    ]
    assert nowhere.apply() is None  # running it here is still fine


def test_a_queued_call_is_cancelled_and_never_runs(broker: RunningBroker) -> None:
    from shop.gearman_workers.feeds import broken_feed

    with override_settings(GEARMAN_CLIENT_SERVERS=[broker.address]):
        call = broken_feed("https://example.com/never")
        assert call.handle is not None
        assert call.cancel() is True
        assert call.cancel() is False  # the broker has it no more
    with AdminClient(broker.address) as admin:
        assert not any(row.total for row in admin.status() if row.name.endswith("broken_feed"))


def test_task_functions_chain_and_a_retried_step_runs_as_the_same_job(
    broker: RunningBroker, tasks_worker: WorkerProcess, tmp_path: Path
) -> None:
    from shop.gearman_workers.feeds import add_after_a_failure, double

    from django_jobs.sending.serialization import loads_result
    from django_jobs.workflows import chain, step

    calls = chain(step(double, 5), step(add_after_a_failure, 1, str(tmp_path / "marker")))
    first, second = calls.enqueue()
    assert first.handle is not None and second.handle is not None
    with AdminClient(broker.address) as admin:
        wait_until(lambda: getattr(admin.result(second.handle.handle), "finished", False))
        ended = admin.result(second.handle.handle)
    assert ended is not None and ended.status == "successful"
    assert loads_result(ended.value or b"") == 11  # double(5) + 1
    assert ended.attempts == 2 and "the first attempt fails" in ended.errors[0]
    with pytest.raises(TypeError, match="RUNTIME executor"):
        step(task(executor=TaskExecutor.RUNTIME)(lambda: None))
