"""Tests of django_jobs against the Django project in ``tests/django_project``.

This process loads that project's settings (for the client and in-process
checks); workers and commands run as real ``manage.py`` processes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

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
