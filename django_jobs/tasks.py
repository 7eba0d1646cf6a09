"""``django_jobs.tasks``, the task API (``@task``, ``TaskExecutor``): the import path the docs
give users, kept as the module ``django_jobs.task_api.tasks`` itself (not a copy), so its
state and names are the same."""

import sys

from django_jobs.task_api import tasks as _module
from django_jobs.task_api.tasks import *  # noqa: F403  (the public names, for type checkers)

sys.modules[__name__] = _module
