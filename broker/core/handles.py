"""Job handles, ``H:<prefix>:<number>``: numbers never repeat, across restarts too.

Numbers are reserved in the store a block at a time (well ahead of use, so the
reservation is on disk long before it runs out), which costs one write per
block instead of one per handle.
"""

from __future__ import annotations

from collections.abc import Callable

HANDLE_BLOCK = 100_000
# No handle number the broker gives out is this many digits long.
_MAX_NUMBER_DIGITS = 18


def handle_number(handle: bytes) -> int:
    return int(handle.rpartition(b":")[2])


def any_number(handle: bytes) -> int | None:
    """The number a handle of any prefix ends with (``H:host:N``, an application's
    ``spoolgear_jobs:N``), else ``None``."""
    return _number(handle.rpartition(b":")[2])


def _number(digits: bytes) -> int | None:
    if not digits.isdigit() or len(digits) > _MAX_NUMBER_DIGITS:
        return None
    return int(digits)


class Handles:
    def __init__(self, prefix: bytes, reserve: Callable[[int], None]) -> None:
        self.prefix = prefix + b":"
        self.reserve = reserve
        """Records that numbers below the given one may be in use."""
        self._next = 1
        self._reserved = 0

    def resume(self, next_number: int) -> None:
        """Continue after a stored reservation (at start-up)."""
        self._next = self._reserved = next_number

    def new(self) -> bytes:
        number = self._next
        self._next = number + 1
        if number + HANDLE_BLOCK // 2 >= self._reserved:
            self._reserved = max(self._reserved, number) + HANDLE_BLOCK
            self.reserve(self._reserved)
        return self.prefix + b"%d" % number

    def of(self, number: int) -> bytes:
        """The handle of a stored job or record."""
        return self.prefix + b"%d" % number

    def number(self, handle: bytes) -> int | None:
        """The number of a handle this broker could have given, else ``None``."""
        if not handle.startswith(self.prefix):
            return None
        return _number(handle[len(self.prefix) :])
