"""``broker.uwsgi_client``, the networked-spooling client: the import path the docs give users,
kept as the module ``broker.uwsgi_compat.spool_client`` itself (not a copy), so its state
and names are the same."""

import sys

from broker.uwsgi_compat import spool_client as _module
from broker.uwsgi_compat.spool_client import *  # noqa: F403  (the public names, for type checkers)

sys.modules[__name__] = _module
