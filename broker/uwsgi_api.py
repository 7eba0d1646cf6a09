"""``broker.uwsgi_api``, the ``uwsgi`` module's spool API for web processes: the import path
the docs give users, kept as the module ``broker.uwsgi_compat.api`` itself (not a copy), so
its state and names are the same."""

import sys

from broker.uwsgi_compat import api as _module
from broker.uwsgi_compat.api import *  # noqa: F403  (the public names, for type checkers)

sys.modules[__name__] = _module
