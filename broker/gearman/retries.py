"""Running a failed job again later, the same way for every kind of worker.

``spoolgear spooler`` (``--retry-delay``, doubled each time up to ``--max-retry-delay``)
and the task API (``retry_timeout``, ``retry_backoff``, ``retry_jitter``) resubmit a job
that failed as a delayed background job: the on-retry step (``retry_or_give_up``), how
long each attempt waits, and the log line that says so are written here once; each keeps
its own policy and wording as parameters.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable


def backoff_delay(
    first: float,
    retry: int,
    *,
    factor: float = 2.0,
    cap: float | None = None,
    jitter: float = 0.0,
) -> float:
    """Seconds before retry number ``retry`` (1 for the first): ``first``, multiplied by
    ``factor`` for each retry after the first, at most ``cap``, then moved by up to
    +- ``jitter`` of itself at random (never below 0)."""
    delay = first * factor ** (retry - 1)
    if cap is not None:
        delay = min(delay, cap)
    if jitter:
        delay = max(0.0, delay * (1 + random.uniform(-jitter, jitter)))
    return delay


def log_retry(
    log: logging.Logger, what: str, attempt: int, attempts: int, reason: str, delay: float
) -> None:
    """One WARNING line per retry: which attempt failed, why (the last line of the
    reason, a traceback's exception), and when the next one runs."""
    last_line = (reason.strip().splitlines() or [""])[-1]
    log.warning(
        "%s attempt %d of %d: %s; again in %.1f s", what, attempt, attempts, last_line, delay
    )


def retry_or_give_up(
    log: logging.Logger,
    what: str,
    *,
    attempt: int,
    attempts: int,
    reason: str,
    delay: float,
    resubmit: Callable[[float], object],
    give_up: Callable[[], Exception],
) -> None:
    """After failed attempt number ``attempt`` of ``attempts``: queue the next one
    ``delay`` seconds later with ``resubmit`` and log it, or raise ``give_up()`` (a
    ``WorkFailed``: the job goes to the failed list) when it was the last.

    The next attempt is stored before the current job reports: a crash in between
    runs an attempt twice, never zero times.
    """
    if attempt >= attempts:
        raise give_up()
    log_retry(log, what, attempt, attempts, reason, delay)
    resubmit(delay)
