"""Running a failed job again later, the same way for every kind of worker.

``spoolgear spooler`` (``--retry-delay``, doubled each time up to ``--max-retry-delay``)
and the task API (``retry_timeout``, ``retry_backoff``, ``retry_jitter``) resubmit a job
that failed as a delayed background job; how long each waits, and the log line that
says so, are written here once.
"""

from __future__ import annotations

import logging
import random


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
