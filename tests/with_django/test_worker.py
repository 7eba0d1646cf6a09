"""``manage.py gearman_worker`` processes serving the test project's tasks on a real broker."""

from __future__ import annotations

import datetime as dt
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from django.test import override_settings

from broker.admin import AdminClient
from broker.errors import JobFailed
from django_jobs.client import GearmanClient, Job, TaskError
from tests.helpers import RunningBroker, run_broker, wait_until
from tests.with_django.project import (
    WorkerProcess,
    gearman_worker,
    manage,
    registered,
    wait_for_file,
)

MAIL_TASKS = {
    "mail.send",
    "shop.mail.database",
    "shop.mail.echo",
    "shop.mail.explode",
    "shop.mail.progress",
    "shop.mail.slow",
}


@pytest.fixture(scope="module")
def shared_broker() -> Iterator[RunningBroker]:
    with run_broker() as running:
        yield running


@pytest.fixture(scope="module")
def mail_worker(shared_broker: RunningBroker) -> Iterator[WorkerProcess]:
    with gearman_worker(shared_broker.address, "-a", "shop", "-n", "mail") as worker:
        yield worker


@pytest.fixture
def client(shared_broker: RunningBroker) -> Iterator[GearmanClient]:
    with GearmanClient([shared_broker.address], timeout=30) as gearman:
        yield gearman


def test_args_and_kwargs_of_every_type_round_trip(
    mail_worker: WorkerProcess, client: GearmanClient
) -> None:
    values = {
        "when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "day": dt.date(2026, 1, 2),
        "money": Decimal("10.05"),
        "id": uuid.uuid4(),
        "raw": b"\x00\xff",
        "text": "naïve",
        "number": 7,
        "ratio": 0.25,
        "none": None,
        "flag": False,
        "nested": {"list": [1, {2: "two"}]},
    }
    result = client.submit_job("shop.mail.echo", 1, b"two", kwargs=values)
    assert result == {"args": [1, b"two"], "kwargs": values}


def test_reserved_names_go_through_kwargs_and_extra_keywords_are_kwargs(
    mail_worker: WorkerProcess, client: GearmanClient
) -> None:
    result = client.submit_job("shop.mail.echo", kwargs={"timeout": 3, "args": "x"}, colour="red")
    assert result == {"args": [], "kwargs": {"timeout": 3, "args": "x", "colour": "red"}}
    assert client.submit_job("shop.mail.echo", 0)["args"] == [0], "a falsy argument is kept"


def test_an_exception_reaches_the_client_and_the_log(
    mail_worker: WorkerProcess, client: GearmanClient
) -> None:
    with pytest.raises(TaskError) as raised:
        client.submit_job("shop.mail.explode", "no stamps left")
    assert raised.value.report == "ValueError: no stamps left"
    log = mail_worker.output()
    assert "ERROR job shop.mail.explode" in log
    assert 'mail.py", line' in log and "raise ValueError(message)" in log


def test_progress_and_data_reach_the_foreground_client(
    mail_worker: WorkerProcess, client: GearmanClient
) -> None:
    statuses: list[tuple[int, int]] = []
    chunks: list[bytes] = []
    assert (
        client.submit_job(
            "shop.mail.progress",
            3,
            on_status=lambda n, d: statuses.append((n, d)),
            on_data=chunks.append,
        )
        == 3
    )
    assert statuses == [(1, 3), (2, 3), (3, 3)]
    assert chunks == [b"step 1", b"step 2", b"step 3"]


def test_tasks_may_use_the_database(mail_worker: WorkerProcess, client: GearmanClient) -> None:
    assert client.submit_job("shop.mail.database") == 42
    assert client.submit_job("shop.mail.database") == 42


def test_each_job_is_logged_with_name_handle_and_duration_at_verbosity_2(
    mail_worker: WorkerProcess, client: GearmanClient
) -> None:
    client.submit_job("shop.mail.echo", "quiet")
    assert " done in " not in mail_worker.output()  # -v 1 (the default): failures only
    with (
        run_broker() as own,
        gearman_worker(own.address, "-a", "shop", "-n", "mail", "-v", "2") as loud,
        GearmanClient([own.address], timeout=30) as loud_client,
    ):
        loud_client.submit_job("shop.mail.echo", "logged")
        lines = loud.output().splitlines()
    assert any(
        line.split()[3:5] == ["job", "shop.mail.echo"]
        and line.endswith(" ms")
        and " done in " in line
        for line in lines
    )


def test_the_client_id_tells_workers_apart(
    shared_broker: RunningBroker, mail_worker: WorkerProcess
) -> None:
    with AdminClient(shared_broker.address) as admin:
        ids = [w.client_id for w in admin.workers() if w.functions]
    assert any(
        client_id.endswith(f":{mail_worker.pid}:shop.mail") and client_id.count(":") == 2
        for client_id in ids
    )
    assert set(registered(shared_broker.address, mail_worker.pid) or ()) == MAIL_TASKS


def test_batches_and_background_jobs(
    mail_worker: WorkerProcess, client: GearmanClient, tmp_path: Path
) -> None:
    results = client.submit_jobs([Job("shop.mail.echo", [n]) for n in range(20)])
    assert [result["args"] for result in results] == [[n] for n in range(20)]
    mixed = client.submit_jobs(
        [Job("shop.mail.explode", ["x"]), Job("shop.mail.echo", ["ok"])], return_exceptions=True
    )
    assert isinstance(mixed[0], TaskError)
    assert mixed[1] == {"args": ["ok"], "kwargs": {}}
    with pytest.raises(TaskError):
        client.submit_jobs([Job("shop.mail.explode", ["x"]), Job("shop.mail.echo", ["ok"])])
    outbox = tmp_path / "outbox"
    handles = client.submit_jobs(
        [Job("mail.send", [str(outbox), f"user{n}@example.com"]) for n in range(3)], background=True
    )
    assert len({handle.handle for handle in handles}) == 3
    client.dispatch_background_task(
        "mail.send",
        None,
        kwargs={"outbox": str(outbox), "to": "jbox@example.com", "subject": "legacy call"},
    )
    wait_until(lambda: outbox.exists() and len(outbox.read_text().splitlines()) == 4)
    assert sorted(outbox.read_text().splitlines()) == [
        "jbox@example.com|legacy call",
        "user0@example.com|",
        "user1@example.com|",
        "user2@example.com|",
    ]


def test_queues_pick_the_tasks_a_process_serves(shared_broker: RunningBroker) -> None:
    with gearman_worker(shared_broker.address, "-a", "shop", "-n", "images", "-q", "thumbs") as w:
        assert registered(shared_broker.address, w.pid) == ("shop.images.thumbnail",)
    with gearman_worker(
        shared_broker.address, "-a", "shop", "-n", "images", "-q", "thumbs", "-q", "images"
    ) as w:
        assert set(registered(shared_broker.address, w.pid) or ()) == {
            "shop.images.thumbnail",
            "shop.images.resize",
        }
    with (
        gearman_worker(
            shared_broker.address, "-a", "legacy", "-n", "gearman_jobs", "-q", "math"
        ) as w,
        GearmanClient([shared_broker.address]) as client,
    ):
        assert registered(shared_broker.address, w.pid) == ("legacy.add",)
        assert client.submit_job("legacy.add", 2, 3, timeout=10) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-a", "shop", "-n", "nope"],
            "app 'shop' has no worker 'nope'; its workers: clock, farm, feeds, images, mail",
        ),
        (
            ["-a", "nope", "-n", "mail"],
            "no installed app 'nope'; apps with workers: legacy, seeds, shop",
        ),
        (["-a", "shop"], "give -a APP and -n WORKER (or only --farm NAME / --mule ID)"),
        (["-n", "mail"], "give -a APP and -n WORKER (or only --farm NAME / --mule ID)"),
        (["--farm", "two words"], "--farm: a farm name is a non-empty word, got 'two words'"),
        (["--mule", "0"], "--mule must be a positive id"),
        (
            ["-a", "shop", "-n", "mail", "-q", "video"],
            "has no queue video; its queues: default, outbox",
        ),
        (["-a", "shop", "-n", "mail", "--max-jobs", "0"], "--max-jobs must be positive"),
    ],
)
def test_wrong_options_are_a_clear_error(args: list[str], message: str) -> None:
    finished = manage("127.0.0.1:1", "gearman_worker", *args)
    assert finished.returncode != 0
    assert message in finished.stderr
    assert "Traceback" not in finished.stderr


def test_sigterm_during_a_job_lets_it_finish_and_report(
    broker: RunningBroker, tmp_path: Path
) -> None:
    started, stops = tmp_path / "started", tmp_path / "stops"
    with (
        gearman_worker(
            broker.address, "-a", "shop", "-n", "mail", STOP_MARKER=str(stops)
        ) as worker,
        GearmanClient([broker.address]) as c,
    ):

        def terminate_once_started() -> None:
            wait_for_file(started)
            worker.process.send_signal(signal.SIGTERM)

        killer = threading.Thread(target=terminate_once_started)
        killer.start()
        assert c.submit_job("shop.mail.slow", 1.5, str(started), timeout=30) == "slept 1.5"
        killer.join()
        assert worker.wait() == 0
    assert stops.read_text() == "shop.mail signal\n"
    assert "SIGTERM: finishing the running job" in worker.output()


def test_an_idle_worker_exits_on_sigint(broker: RunningBroker, tmp_path: Path) -> None:
    stops = tmp_path / "stops"
    with gearman_worker(
        broker.address, "-a", "shop", "-n", "mail", STOP_MARKER=str(stops)
    ) as worker:
        worker.process.send_signal(signal.SIGINT)
        assert worker.wait(timeout=5) == 0
    assert stops.read_text() == "shop.mail signal\n"


def test_a_second_signal_stops_at_once_and_the_job_is_requeued(
    broker: RunningBroker, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    with (
        gearman_worker(broker.address, "-a", "shop", "-n", "mail") as worker,
        GearmanClient([broker.address]) as client,
    ):
        client.submit_job("shop.mail.slow", 60, str(started), background=True)
        wait_for_file(started)
        worker.process.send_signal(signal.SIGTERM)
        wait_until(lambda: "finishing the running job" in worker.output())
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=10) == 128 + signal.SIGTERM
    with AdminClient(broker.address) as admin:
        slow = next(s for s in admin.status() if s.name == "shop.mail.slow")
    assert (slow.total, slow.running) == (1, 0)


@pytest.mark.parametrize(
    ("option", "reason", "jobs"),
    [(["--max-jobs", "2"], "max_jobs", 2), (["--max-memory", "1"], "max_memory", 1)],
)
def test_limits_end_the_process_cleanly(
    broker: RunningBroker, tmp_path: Path, option: list[str], reason: str, jobs: int
) -> None:
    stops = tmp_path / "stops"
    with (
        gearman_worker(
            broker.address, "-a", "shop", "-n", "mail", "-v", "2", *option, STOP_MARKER=str(stops)
        ) as worker,
        GearmanClient([broker.address]) as client,
    ):
        client.submit_jobs([Job("shop.mail.echo", [n]) for n in range(3)], background=True)
        assert worker.wait() == 0
    assert stops.read_text() == f"shop.mail {reason}\n"
    assert worker.output().count("DEBUG job shop.mail.echo") == jobs


def test_timeout_hands_an_overdue_job_back_to_the_broker(tmp_path: Path) -> None:
    with (
        run_broker("--job-retries", "1") as running,
        gearman_worker(running.address, "-a", "shop", "-n", "mail", "--timeout", "1"),
        GearmanClient([running.address]) as client,
        pytest.raises(JobFailed),
    ):
        client.submit_job("shop.mail.slow", 4, str(tmp_path / "started"), timeout=30)


def test_pickle_opt_in_serves_legacy_producers(broker: RunningBroker) -> None:
    with (
        gearman_worker(broker.address, "-a", "shop", "-n", "mail", GEARMAN_SERIALIZER="pickle"),
        override_settings(GEARMAN_SERIALIZER="pickle"),
        GearmanClient([broker.address]) as client,
    ):
        assert client.submit_job("shop.mail.echo", (1, 2), dt.date(2020, 1, 1)) == {
            "args": ((1, 2), dt.date(2020, 1, 1)),
            "kwargs": {},
        }


def test_stale_database_connections_are_closed_before_and_after_each_job(
    tmp_path: Path,
) -> None:
    """The step ``gearman_worker`` and ``spoolgear spooler`` run around every job, on a
    real SQLite file database whose connection's lifetime (CONN_MAX_AGE) ran out."""
    from django.db import connections

    from broker.gearman.steps import closing_stale_database_connections

    alias = "stale_test"
    connections.settings[alias] = {
        **connections.settings["default"],
        "NAME": str(tmp_path / "s.db"),
    }
    connection = connections[alias]
    try:
        connection.ensure_connection()
        connection.close_at = time.monotonic() - 1  # past its CONN_MAX_AGE
        with closing_stale_database_connections(None):  # type: ignore[arg-type]
            assert connection.connection is None, "closed before the job"
            connection.ensure_connection()
            connection.close_at = time.monotonic() - 1
        assert connection.connection is None, "closed after the job"
    finally:
        connection.close()
        del connections[alias]
        del connections.settings[alias]
