"""``django_jobs.uwsgi_tasks``, the ``uwsgi_tasks`` drop-in: the import path the docs
give users, kept as the module ``django_jobs.task_api.uwsgi_tasks`` itself (not a copy), so its
state and names are the same."""

import sys

from django_jobs.task_api import uwsgi_tasks as _module
from django_jobs.task_api.uwsgi_tasks import *  # noqa: F403  (the public names, for type checkers)

sys.modules[__name__] = _module
