"""``@timer`` / ``@cron`` / lazy variants: schedules kept by the broker, registered by workers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from django.test import override_settings

from broker.admin import AdminClient, ScheduleInfo
from broker.client import uwsgi_cron
from django_jobs.schedules import cron, timer
from tests.helpers import RunningBroker, run_broker, wait_until
from tests.with_django.project import gearman_worker

HEARTBEAT = "shop.clock.heartbeat"


def schedules(address: str) -> dict[str, ScheduleInfo]:
    with AdminClient(address) as admin:
        return {schedule.function: schedule for schedule in admin.show_schedules()}


def ticks(path: Path, name: str) -> list[list[str]]:
    """(argument, handle) of each run of ``name`` so far."""
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.split(" ", 1)[1].rsplit(" ", 1) for line in lines if line.startswith(name + " ")]


def at_least(path: Path, name: str, count: int) -> Callable[[], bool]:
    return lambda: len(ticks(path, name)) >= count


def test_workers_register_one_schedule_and_each_firing_runs_once(
    broker: RunningBroker, tmp_path: Path
) -> None:
    ticks_file = tmp_path / "ticks"
    with (
        gearman_worker(
            broker.address, "-a", "shop", "-n", "clock", TICKS_FILE=str(ticks_file)
        ) as first,
        gearman_worker(
            broker.address, "-a", "shop", "-n", "clock", TICKS_FILE=str(ticks_file)
        ) as second,
    ):
        for worker in (first, second):
            wait_until(lambda w=worker: f"schedule of {HEARTBEAT} registered" in w.output())
        wait_until(at_least(ticks_file, "heartbeat", 3))
        registered = schedules(broker.address)
    assert {name: s.spec for name, s in registered.items()} == {
        HEARTBEAT: "@every 1",
        "shop.clock.every_five_minutes_of_even_hours": "*/5 */2 * * *",
    }
    runs = ticks(ticks_file, "heartbeat")
    assert {argument for argument, _ in runs} == {"(7,)"}  # the signal number, uWSGI-style
    handles = [handle for _, handle in runs]
    assert len(set(handles)) == len(handles), "a firing ran twice"


def test_a_timer_survives_a_broker_restart_between_two_firings(tmp_path: Path) -> None:
    ticks_file, store = tmp_path / "ticks", f"sqlite:{tmp_path / 'jobs.db'}"
    with run_broker("--store", store) as first:
        port = first.port
        with gearman_worker(
            first.address, "-a", "shop", "-n", "clock", TICKS_FILE=str(ticks_file)
        ) as worker:
            wait_until(at_least(ticks_file, "heartbeat", 1))
            before = schedules(first.address)[HEARTBEAT]
            first.process.terminate()
            first.process.wait(10)
            fired_before_restart = len(ticks(ticks_file, "heartbeat"))
            with run_broker("--store", store, "--port", str(port)) as second:
                wait_until(at_least(ticks_file, "heartbeat", fired_before_restart + 2), timeout=20)
                after = schedules(second.address)[HEARTBEAT]
            assert worker.process.poll() is None, "the worker rode out the restart"
    assert after.handle == before.handle
    assert after.fired > before.fired
    handles = [handle for _, handle in ticks(ticks_file, "heartbeat")]
    assert len(set(handles)) == len(handles)


def test_a_lazy_timer_is_armed_by_calling_it_with_its_setup_changed_first(
    broker: RunningBroker, tmp_path: Path
) -> None:
    from shop.gearman_workers.clock import twice

    ticks_file = tmp_path / "ticks"
    with (
        gearman_worker(broker.address, "-a", "shop", "-n", "clock", TICKS_FILE=str(ticks_file)),
        override_settings(GEARMAN_CLIENT_SERVERS=[broker.address]),
    ):
        wait_until(lambda: HEARTBEAT in schedules(broker.address))
        assert "shop.clock.twice" not in schedules(broker.address)
        twice.add_setup(seconds=1, iterations=2)
        handle = twice()
        assert schedules(broker.address)["shop.clock.twice"].handle == handle.handle
        wait_until(at_least(ticks_file, "twice", 2))
        wait_until(lambda: "shop.clock.twice" not in schedules(broker.address))
    assert [argument for argument, _ in ticks(ticks_file, "twice")] == ["()", "()"]


@pytest.mark.parametrize(
    ("value", "field"), [(-1, "*"), (-5, "*/5"), (0, "0"), (7, "7"), ("1-5", "1-5")]
)
def test_uwsgi_cron_numbers_become_cron_fields(value: int | str, field: str) -> None:
    assert uwsgi_cron(value, -1, -1, -1, -1) == f"{field} * * * *"


def test_bad_timings_are_refused_at_decoration() -> None:
    with pytest.raises(ValueError, match="whole seconds >= 1"):
        timer(seconds=0, name="tests.no_seconds")(lambda: None)
    with pytest.raises(ValueError, match="five fields"):
        cron(minute="1 2", name="tests.bad_cron")(lambda: None)
