"""``django_jobs.backend``, Django's Tasks framework backend (``SpoolgearBackend``): the path
``TASKS`` names, kept as the module ``django_jobs.tasks_framework.backend`` itself (not a
copy), so its state and names are the same."""

import sys

from django_jobs.tasks_framework import backend as _module
from django_jobs.tasks_framework.backend import *  # noqa: F403  (the public names, for type checkers)

sys.modules[__name__] = _module
