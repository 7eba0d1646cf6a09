from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broker import uwsgi_api
from tests.helpers import RunningBroker, run_broker
from tests.postgres import Cluster, fresh_database, run_postgres


@pytest.fixture(autouse=True)
def _spool_connections_closed() -> Iterator[None]:
    """Tests that point the ``uwsgi`` spool API at a broker leave no connection behind."""
    yield
    uwsgi_api.disconnect()


@pytest.fixture
def broker() -> Iterator[RunningBroker]:
    with run_broker() as running:
        yield running


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """One throwaway PostgreSQL cluster for the whole run (tests that stop it start it
    again); each test gets a database of its own (``postgres_store``)."""
    with run_postgres() as cluster:
        yield cluster


@pytest.fixture
def postgres_store(postgres_cluster: Cluster, tmp_path: Path) -> str:
    """A new, empty database of the cluster, as a ``--store`` URL."""
    return fresh_database(postgres_cluster.url, tmp_path.name)
