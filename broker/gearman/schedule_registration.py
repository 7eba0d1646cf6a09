"""Registering schedules from a starting worker process, without holding up its jobs.

Every ``gearman_worker`` and ``spoolgear spooler`` registers the schedules of
what it serves when it starts (idempotently: the broker keeps one per name).
While no server answers it keeps trying in a background thread, backing off,
so an unreachable broker delays the schedules, not the jobs, and says so in the log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from broker.errors import BrokerError
from broker.gearman.client import JobHandle

# The longest wait between two attempts at registering a schedule.
MAX_REGISTER_DELAY = 30.0

Registration = tuple[str, Callable[[], JobHandle]]
"""A schedule's name, and the call that registers it."""


def register_until_done(registrations: Sequence[Registration], log: logging.Logger) -> None:
    delay = 1.0
    pending = list(registrations)
    while pending:
        name, register = pending[0]
        try:
            handle = register()
        except (BrokerError, OSError) as exc:
            log.warning(
                "could not register the schedule of %s (%s); retrying in %.0f s", name, exc, delay
            )
            time.sleep(delay)
            delay = min(delay * 2, MAX_REGISTER_DELAY)
            continue
        log.info("schedule of %s registered as %s", name, handle.handle)
        pending.pop(0)


def register_in_background(
    registrations: Sequence[Registration], log: logging.Logger
) -> threading.Thread | None:
    if not registrations:
        return None
    thread = threading.Thread(
        target=register_until_done,
        args=(registrations, log),
        name="spoolgear-schedules",
        daemon=True,
    )
    thread.start()
    return thread
