"""Background jobs written in the Django project's own PostgreSQL transaction: rolled
back, they never run; committed, a broker sharing that database as its store runs them.
A real PostgreSQL cluster, a real broker on it, real ``manage.py`` processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from psycopg.conninfo import conninfo_to_dict

from django_jobs.conf import job_settings
from tests.helpers import RunningBroker, run_broker, wait_until
from tests.with_django.project import gearman_worker, manage

SUBMIT = """
from django.db import transaction
from django_jobs.client import GearmanClient
from shop.gearman_workers.feeds import countdown

client = GearmanClient()
try:
    with transaction.atomic():
        countdown(0, {rolled_back!r})
        client.submit_job("mail.send", {outbox!r}, "rolled-back@example.com", background=True)
        raise RuntimeError("the view failed")
except RuntimeError:
    pass
with transaction.atomic():
    call = countdown(0, {committed!r})
    handle = client.submit_job("mail.send", {outbox!r}, "committed@example.com", background=True)
    print(call.handle.server, handle.handle)
handle = client.submit_job("mail.send", {outbox!r}, "no-transaction@example.com", background=True)
print(handle.server)
"""


def postgresql_settings(url: str) -> dict[str, str]:
    parts = conninfo_to_dict(url)
    return {
        "DJANGO_SETTINGS_MODULE": "testsite.settings_postgresql",
        "TEST_PG_HOST": str(parts["host"]),
        "TEST_PG_PORT": str(parts["port"]),
        "TEST_PG_NAME": str(parts["dbname"]),
        "TEST_PG_USER": str(parts["user"]),
    }


@pytest.fixture
def broker(postgres_store: str) -> Iterator[RunningBroker]:
    with run_broker("--store", postgres_store) as running:
        yield running


def test_a_rolled_back_job_never_runs_and_a_committed_one_does(
    broker: RunningBroker, postgres_store: str, tmp_path: Path
) -> None:
    rolled_back, committed = tmp_path / "rolled back", tmp_path / "committed"
    outbox = tmp_path / "outbox"
    with (
        gearman_worker(broker.address, "-a", "shop", "-n", "feeds"),
        gearman_worker(broker.address, "-a", "shop", "-n", "mail", "-q", "outbox"),
    ):
        submitted = manage(
            broker.address,
            "shell",
            "-c",
            SUBMIT.format(
                rolled_back=str(rolled_back), committed=str(committed), outbox=str(outbox)
            ),
            **postgresql_settings(postgres_store),
        )
        assert submitted.returncode == 0, submitted.stderr
        *_, in_transaction, outside = submitted.stdout.splitlines()
        assert in_transaction.startswith("database:default spoolgear_jobs:")
        assert outside == broker.address  # outside a transaction: through the broker
        wait_until(lambda: outbox.exists() and len(outbox.read_text().splitlines()) == 2)
        wait_until(committed.exists)
    assert sorted(outbox.read_text().splitlines()) == [
        "committed@example.com|",
        "no-transaction@example.com|",
    ]
    assert not rolled_back.exists()


@pytest.mark.parametrize(
    ("alias", "reason"),
    [
        ("jobs", "'jobs' is not one of DATABASES"),
        ("default", "'default' is a sqlite database: jobs can be written in a transaction"),
    ],
)
def test_a_store_database_that_cannot_work_is_refused(alias: str, reason: str) -> None:
    with (
        override_settings(GEARMAN_STORE_DATABASE=alias),
        pytest.raises(ImproperlyConfigured, match=reason),
    ):
        job_settings()


TASKS_SUBMIT = """
from django.db import transaction
from django_tasks import default_task_backend
from shop.tasks import add

try:
    with transaction.atomic():
        rolled_back = add.enqueue(1, 1)
        raise RuntimeError("the view failed")
except RuntimeError:
    pass
with transaction.atomic():
    committed = add.enqueue(2, 3)
print(rolled_back.id, committed.id)
"""

TASKS_RESULT = """
from django_tasks import default_task_backend
from django_tasks.exceptions import TaskResultDoesNotExist

for result_id in {ids!r}:
    try:
        result = default_task_backend.get_result(result_id)
        print(result.status, result.return_value if result.is_finished else "-")
    except TaskResultDoesNotExist:
        print("unknown", "-")
"""


def test_tasks_framework_jobs_are_written_in_the_transaction_too(
    broker: RunningBroker, postgres_store: str
) -> None:
    settings = postgresql_settings(postgres_store)
    with gearman_worker(broker.address, "--tasks-queue", "default", **settings):
        submitted = manage(broker.address, "shell", "-c", TASKS_SUBMIT, **settings)
        assert submitted.returncode == 0, submitted.stderr
        ids = submitted.stdout.splitlines()[-1].split()
        assert all(result_id.startswith("spoolgear_jobs:") for result_id in ids)

        def outcomes() -> list[str]:
            shown = manage(broker.address, "shell", "-c", TASKS_RESULT.format(ids=ids), **settings)
            assert shown.returncode == 0, shown.stderr
            return shown.stdout.splitlines()[-2:]

        wait_until(lambda: outcomes() == ["unknown -", "SUCCESSFUL 5"], "the committed task ran")
