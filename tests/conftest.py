from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import RunningBroker, run_broker


@pytest.fixture
def broker() -> Iterator[RunningBroker]:
    with run_broker() as running:
        yield running
