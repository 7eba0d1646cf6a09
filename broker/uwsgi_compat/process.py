"""What handler modules written for uWSGI expect of the process that runs them.

Under uWSGI they ``import uwsgi`` (a module only uWSGI provides) and
``from uwsgidecorators import spool``; Django projects expect ``django.setup()``
to have run and their database connections to be looked after between tasks.
``spoolgear spooler`` calls ``prepare()`` before importing handler modules; its worker
looks after the database connections around each task
(``broker.gearman.steps.closing_stale_database_connections``). Nothing is installed on
disk under uWSGI's names, so a real uWSGI process keeps its own ``uwsgi`` module.

Django is imported by name only when ``DJANGO_SETTINGS_MODULE`` is set: the
broker package itself never depends on it.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

from broker.uwsgi_compat import api as uwsgi_api
from broker.uwsgi_compat import decorators as uwsgidecorators

log = logging.getLogger("spoolgear.spooler")


def prepare() -> bool:
    """Provide ``uwsgi`` and ``uwsgidecorators``, and set Django up if configured;
    whether it was."""
    sys.modules["uwsgi"] = uwsgi_api
    sys.modules["uwsgidecorators"] = uwsgidecorators
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        importlib.import_module("django").setup()
        log.info("Django set up with %s", os.environ["DJANGO_SETTINGS_MODULE"])
        return True
    return False
