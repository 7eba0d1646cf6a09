"""``django_jobs.schedules``, timers and cron (``@timer``, ``@cron``): the import path the docs
give users, kept as the module ``django_jobs.task_api.schedules`` itself (not a copy), so its
state and names are the same."""

import sys

from django_jobs.task_api import schedules as _module
from django_jobs.task_api.schedules import *  # noqa: F403  (the public names, for type checkers)

sys.modules[__name__] = _module
