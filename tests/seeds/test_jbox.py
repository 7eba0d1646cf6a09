"""django-gearman-jbox README (seeds/004): every example, on a real broker and workers.

The Supervisord section (numprocs pools, groups, ``restart foo:*``) runs for real in
tests/integration/test_supervisor.py, and "Execute code when workers die" (the
``worker_stopping`` signal) in tests/with_django/test_worker.py.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from decimal import Decimal

import pytest

from broker.addresses import parse_address
from broker.admin import AdminClient
from broker.client import JobHandle
from django_jobs.client import GearmanClient
from tests.helpers import RunningBroker, wait_until
from tests.with_django.project import WorkerProcess, gearman_worker, manage, parse_tables

JBOX_TASKS = (
    "foo",
    "my-task-name",
    "my-task-name-reserved",
    "my-task-name-three",
    "seeds.jbox.my_task_function",
    "task_babar",
    "task_bar",
    "task_foo",
)


@pytest.fixture(scope="module")
def worker() -> Iterator[tuple[RunningBroker, WorkerProcess]]:
    """``python manage.py gearman_worker -a django_app_name -n worker_foo``."""
    from tests.helpers import run_broker

    with (
        run_broker() as broker,
        # -v 2: each finished job is logged (DEBUG), which these tests count.
        gearman_worker(broker.address, "-a", "seeds", "-n", "jbox", "-v", "2") as process,
    ):
        yield broker, process


@pytest.fixture
def client(worker: tuple[RunningBroker, WorkerProcess]) -> Iterator[GearmanClient]:
    with GearmanClient([worker[0].address]) as gearman:
        yield gearman


def test_one_server_setting_without_a_port_means_gearmans_port() -> None:
    """``GEARMAN_CLIENT_SERVERS = ['127.0.0.1']``."""
    assert parse_address("127.0.0.1") == ("127.0.0.1", 4730)


def test_a_worker_serves_every_task_of_its_module(
    worker: tuple[RunningBroker, WorkerProcess],
) -> None:
    broker, process = worker
    with AdminClient(broker.address) as admin:
        (functions,) = [w.functions for w in admin.workers() if f":{process.pid}:" in w.client_id]
    assert sorted(functions) == sorted(JBOX_TASKS)


def test_task_parameters_of_any_serializable_type(client: GearmanClient) -> None:
    assert client.submit_job("my-task-name", {"foo": "becomes", "this": "dict"}) == {
        "foo": {"foo": "becomes", "this": "dict"}
    }
    assert client.submit_job("my-task-name", Decimal(1.0)) == {  # noqa: RUF032 (as jbox has it)
        "foo": Decimal(1)
    }
    assert client.submit_job("seeds.jbox.my_task_function", "default name") == {
        "foo": "default name"
    }


def test_tasks_with_more_than_one_parameter(client: GearmanClient) -> None:
    assert client.submit_job("my-task-name-three", one=1, two=2, three=3) == [1, 2, 3]
    assert client.submit_job("my-task-name-three", args=[1, 2, 3]) == [1, 2, 3]
    # jbox: "would produce the error"; here extra positional arguments are the args.
    assert client.submit_job("my-task-name-three", 1, 2, 3) == [1, 2, 3]


def test_reserved_keyword_parameters_go_through_kwargs_or_args(
    client: GearmanClient, worker: tuple[RunningBroker, WorkerProcess]
) -> None:
    expected = {"background": True, "unique": False}
    assert (
        client.submit_job("my-task-name-reserved", kwargs={"background": True, "unique": False})
        == expected
    )
    assert client.submit_job("my-task-name-reserved", args=[True, False]) == expected
    # "Don't panic, your task is safe!": a background job, unique from its payload.
    handles = [
        client.submit_job(
            "my-task-name-reserved",
            background=True,
            unique=True,
            kwargs={"background": False, "unique": False},
        )
        for _ in range(2)
    ]
    assert all(isinstance(handle, JobHandle) for handle in handles)
    wait_until(lambda: worker[1].output().count("job my-task-name-reserved") >= 3)


def test_queues_pick_the_tasks_a_worker_loads(worker: tuple[RunningBroker, WorkerProcess]) -> None:
    """``python manage.py gearman_worker -a <django_app_name> -n <worker_name> -q bar``."""
    broker, _ = worker
    with (
        gearman_worker(broker.address, "-a", "seeds", "-n", "jbox", "-q", "bar") as bar,
        AdminClient(broker.address) as admin,
    ):
        (functions,) = [w.functions for w in admin.workers() if f":{bar.pid}:" in w.client_id]
    assert sorted(functions) == ["task_babar", "task_bar"]


def test_the_client_gets_the_result_or_dispatches_in_the_background(
    client: GearmanClient, worker: tuple[RunningBroker, WorkerProcess]
) -> None:
    sentence = "The quick brown fox jumps over the lazy dog."
    res = client.submit_job("foo", kwargs={"sentence": sentence})
    assert res == sentence.upper()
    handle = client.submit_job("foo", background=True, kwargs={"sentence": sentence})
    assert isinstance(handle, JobHandle)
    wait_until(lambda: worker[1].output().count("job foo ") == 2)


def test_server_info_tables_and_their_filter(worker: tuple[RunningBroker, WorkerProcess]) -> None:
    broker, process = worker
    shown = manage(broker.address, "gearman_server_info")
    assert shown.returncode == 0, shown.stderr
    server, tasks, workers = parse_tables(shown.stdout)
    assert server[0]["Gearman Server Host"] == broker.address
    assert {row["Task Name"] for row in tasks} >= set(JBOX_TASKS)
    assert [row["Client ID"] for row in workers if f":{process.pid}:" in row["Client ID"]]
    filtered = parse_tables(manage(broker.address, "gearman_server_info", "babar").stdout)
    assert [row["Task Name"] for row in filtered[1]] == ["task_babar"]


def test_sigterm_from_supervisord_stops_the_worker_cleanly(broker: RunningBroker) -> None:
    """ "I also added a signal handler to catch SIGTERM signals send by Supervisord"."""
    with gearman_worker(broker.address, "-a", "seeds", "-n", "jbox") as process:
        process.process.send_signal(signal.SIGTERM)
        assert process.wait() == 0
