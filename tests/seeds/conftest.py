"""The documents users migrate from (the uWSGI spooler and mules docs, uwsgi_tasks'
README, a spooler article, django-gearman-jbox's README), example by example.

Each test runs an example ported as docs/moving-over.md says, against real processes,
and asserts what its source describes, or the documented difference. The Django-side
examples live in the test project's ``seeds`` app (tests/django_project/seeds/).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
import pytest

from tests.with_django.project import PROJECT

sys.path.insert(0, str(PROJECT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testsite.settings")
django.setup()


@pytest.fixture(autouse=True)
def _clients_closed() -> Iterator[None]:
    """Each test's broker is new: close the clients ``@task`` calls kept for the last one."""
    yield
    from django_jobs.sending.submission import close_clients

    close_clients()


def read_notes(log: Path) -> list[list[Any]]:
    """What the ported examples noted instead of printing: [pid, words...] per call."""
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
