"""``django_jobs.client``, the client (``GearmanClient``, ``submit_job``): the import path the docs
give users, kept as the module ``django_jobs.sending.client`` itself (not a copy), so its
state and names are the same."""

import sys

from django_jobs.sending import client as _module
from django_jobs.sending.client import *  # noqa: F403  (the public names, for type checkers)

sys.modules[__name__] = _module
