"""Work due at a wall-clock time (epoch jobs, schedule runs), behind a single timer.

gearmand 1.1.20 had no timer for epoch jobs: they ran only when something else
woke a worker. Here every due item is handed to ``on_due`` when its time comes,
and only the earliest one holds a timer, however many are waiting.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Generic, TypeVar

from broker.core.model import CallLater, Cancellable

Item = TypeVar("Item")


MAX_TIMER_WAIT = 3600.0
"""Longest single timer: event loops refuse waits of centuries (a client may ask)."""


class Timeline(Generic[Item]):
    def __init__(
        self,
        call_later: CallLater,
        clock: Callable[[], float],
        on_due: Callable[[Item, float], None],
    ) -> None:
        self.call_later = call_later
        self.clock = clock
        self.on_due = on_due
        self._heap: list[tuple[float, int, Item]] = []
        self._added = 0
        self._timer: Cancellable | None = None
        self._timer_due = 0.0

    def add(self, when: float, item: Item) -> None:
        self._added += 1  # ties keep their order, and items never get compared
        heapq.heappush(self._heap, (when, self._added, item))
        self._arm()

    def _arm(self) -> None:
        if not self._heap:
            return
        due = self._heap[0][0]
        if self._timer is not None:
            if self._timer_due <= due:
                return
            self._timer.cancel()
        self._timer_due = due
        wait = min(MAX_TIMER_WAIT, max(0.0, due - self.clock()))  # far ones: look again later
        self._timer = self.call_later(wait, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self.clock()
        while self._heap and self._heap[0][0] <= now:
            _, _, item = heapq.heappop(self._heap)
            self.on_due(item, now)
        self._arm()
