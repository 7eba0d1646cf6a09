"""``django_jobs.mules``, mules and farms (``@mule``, ``mule_msg``): the import path the docs
give users, kept as the module ``django_jobs.task_api.mules`` itself (not a copy), so its
state and names are the same."""

import sys

from django_jobs.task_api import mules as _module
from django_jobs.task_api.mules import *  # noqa: F403  (the public names, for type checkers)

sys.modules[__name__] = _module
