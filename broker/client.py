"""``broker.client``, the Gearman client: the import path the docs give users, kept as the
module ``broker.gearman.client`` itself (not a copy), so its state and names are the same."""

import sys

from broker.gearman import client as _module
from broker.gearman.client import *  # noqa: F403  (the public names, for type checkers)

sys.modules[__name__] = _module
