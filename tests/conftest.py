from __future__ import annotations

from collections.abc import Iterator

import pytest

from broker import uwsgi_api
from tests.helpers import RunningBroker, run_broker


@pytest.fixture(autouse=True)
def _spool_connections_closed() -> Iterator[None]:
    """Tests that point the ``uwsgi`` spool API at a broker leave no connection behind."""
    yield
    uwsgi_api.disconnect()


@pytest.fixture
def broker() -> Iterator[RunningBroker]:
    with run_broker() as running:
        yield running
