"""Hearing at once of jobs applications commit to a shared PostgreSQL store.

A thread of its own holds a connection that LISTENs on ``broker/transactional.py``'s
channel and calls ``wake`` for each notification (the broker then sweeps: takes the
new rows over). A lost connection is reopened with backoff; each time it listens
again it calls ``wake`` once, for what was committed while it was not listening. The
broker's periodic sweep remains the fallback either way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from broker.transactional import CHANNEL

log = logging.getLogger("spoolgear.store")

_POLL_SECONDS = 1.0  # how often the thread looks whether it should stop
_MAX_BACKOFF = 5.0


class JobListener:
    def __init__(self, url: str, wake: Callable[[], None]) -> None:
        self.url = url
        self.wake = wake
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spoolgear-listen", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    backoff = 0.1
                    self.wake()
                    while not self._stopping.is_set():
                        for _ in connection.notifies(timeout=_POLL_SECONDS):
                            self.wake()
            except psycopg.OperationalError as exc:
                log.warning("listening for committed jobs failed, retrying: %s", exc)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(_POLL_SECONDS * 2)
