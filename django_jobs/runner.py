"""``django_jobs.runner``, ``current_job()`` inside a running task: the import path the docs
give users, kept as the module ``django_jobs.worker.runner`` itself (not a copy), so its
state and names are the same."""

import sys

from django_jobs.worker import runner as _module
from django_jobs.worker.runner import *  # noqa: F403  (the public names, for type checkers)

sys.modules[__name__] = _module
