"""``broker.worker``, the Gearman worker: the import path the docs give users, kept as the
module ``broker.gearman.worker`` itself (not a copy), so its state and names are the same."""

import sys

from broker.gearman import worker as _module
from broker.gearman.worker import *  # noqa: F403  (the public names, for type checkers)

sys.modules[__name__] = _module
