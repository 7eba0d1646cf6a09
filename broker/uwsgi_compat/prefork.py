"""Several copies of one serving loop in forked processes, kept running by a small master.

What uWSGI's master does for its spoolers (``spooler-processes``): fork after the
handler modules are imported, start a fresh child whenever one exits (recycled
after ``spooler-max-tasks`` jobs, or after a harakiri), and on SIGTERM/SIGINT
pass the signal on and wait for every child to finish its running job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from types import FrameType

log = logging.getLogger("spoolgear.spooler")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# A child that lived less than this is restarted only after this long (no fork loop).
MIN_CHILD_LIFE = 1.0


def serve_forked(processes: int, serve: Callable[[], int], *, respawn: bool) -> int:
    """Run ``serve`` (which returns an exit status) in ``processes`` children; with
    ``respawn``, replace each child that exits until a stop signal comes. Returns 0."""
    children: dict[int, float] = {}
    stopping = False

    def stop(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            _kill(pid, signum)

    previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
    try:
        for _ in range(processes):
            children[_fork(serve)] = time.monotonic()
        while children:
            pid, status = os.wait()
            started = children.pop(pid, None)
            if started is None:
                continue
            log.info(
                "spooler process %d exited (status %d)", pid, os.waitstatus_to_exitcode(status)
            )
            if respawn and not stopping:
                if time.monotonic() - started < MIN_CHILD_LIFE:
                    time.sleep(MIN_CHILD_LIFE)
                if not stopping:
                    children[_fork(serve)] = time.monotonic()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def _fork(serve: Callable[[], int]) -> int:
    pid = os.fork()
    if pid:
        return pid
    status = 1
    try:
        for signum in STOP_SIGNALS:  # the serving loop sets its own
            signal.signal(signum, signal.SIG_DFL)
        status = serve()
    except BaseException:
        log.exception("spooler process %d failed", os.getpid())
    finally:
        logging.shutdown()
        os._exit(status)


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.kill(pid, signum)
