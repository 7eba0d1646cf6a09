"""The spool handler both sides of the uWSGI benchmark run: it notes when each task started.

Under uWSGI it is the ``uwsgi.spooler`` callable (``--spooler-python-import``); under
spoolgear it is a module-level ``spooler(env)`` for ``spoolgear spooler --import``.
One line per task: id, the sender's t0, start, finish, pid (SPOOL_BENCH_LOG, line-buffered).
"""

from __future__ import annotations

import os
import time

SPOOL_OK = -2
_log = open(os.environ["SPOOL_BENCH_LOG"], "a", buffering=1)  # noqa: SIM115 - lives with the process


def spooler(env: dict[bytes, bytes]) -> int:
    started = time.time()
    sleep = env.get(b"sleep")
    if sleep:
        time.sleep(float(sleep))
    _log.write(
        f"{env[b'id'].decode()} {env[b't0'].decode()} {started:.6f} {time.time():.6f} "
        f"{os.getpid()}\n"
    )
    return SPOOL_OK


try:
    import uwsgi  # type: ignore[import-untyped]

    uwsgi.spooler = spooler
except ImportError:
    pass
