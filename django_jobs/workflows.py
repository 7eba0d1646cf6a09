"""``django_jobs.workflows``, chains and groups of Tasks framework tasks (``chain``,
``group``, ``step``): the module ``django_jobs.tasks_framework.workflows`` itself (not a
copy), so its state and names are the same."""

import sys

from django_jobs.tasks_framework import workflows as _module
from django_jobs.tasks_framework.workflows import *  # noqa: F403  (the public names, for type checkers)

sys.modules[__name__] = _module
