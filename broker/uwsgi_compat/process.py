"""What handler modules written for uWSGI expect of the process that runs them.

Under uWSGI they ``import uwsgi`` (a module only uWSGI provides) and
``from uwsgidecorators import spool``; Django projects expect ``django.setup()``
to have run and their database connections to be looked after between tasks.
``spoolgear spooler`` calls ``prepare()`` before importing handler modules and
``around_task()`` around each task. Nothing is installed on disk under uWSGI's
names, so a real uWSGI process keeps its own ``uwsgi`` module.

Django is imported by name only when ``DJANGO_SETTINGS_MODULE`` is set: the
broker package itself never depends on it.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Iterator
from types import ModuleType

from broker.uwsgi_compat import api as uwsgi_api
from broker.uwsgi_compat import decorators as uwsgidecorators

log = logging.getLogger("spoolgear.spooler")

_django_db: ModuleType | None = None


def prepare() -> None:
    """Provide ``uwsgi`` and ``uwsgidecorators``, and set Django up if configured."""
    global _django_db
    sys.modules["uwsgi"] = uwsgi_api
    sys.modules["uwsgidecorators"] = uwsgidecorators
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        importlib.import_module("django").setup()
        _django_db = importlib.import_module("django.db")
        log.info("Django set up with %s", os.environ["DJANGO_SETTINGS_MODULE"])


@contextlib.contextmanager
def around_task() -> Iterator[None]:
    """Drop database connections that went stale, before and after a task (as Django does
    around a request), when Django is set up."""
    if _django_db is not None:
        _django_db.close_old_connections()
    try:
        yield
    finally:
        if _django_db is not None:
            _django_db.close_old_connections()
