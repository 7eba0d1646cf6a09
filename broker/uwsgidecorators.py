"""``broker.uwsgidecorators``, the drop-in for uWSGI's ``uwsgidecorators``: the import path the
docs give users, kept as the module ``broker.uwsgi_compat.decorators`` itself (not a copy),
so its state and names are the same."""

import sys

from broker.uwsgi_compat import decorators as _module
from broker.uwsgi_compat.decorators import *  # noqa: F403  (the public names, for type checkers)

sys.modules[__name__] = _module
