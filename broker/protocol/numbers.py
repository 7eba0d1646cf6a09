"""Numbers in packet arguments, read the way gearmand reads them (C's ``strtol``)."""

from __future__ import annotations

import math

LONG_MAX = 2**63 - 1
"""Where C's strtol saturates; longer numbers from the wire stop there."""


def leading_int(text: bytes) -> int:
    """Parse like C's strtol: optional sign and leading digits, else 0; saturated at
    +-LONG_MAX, so a number of any length from the wire stays a usable value."""
    stripped = text.strip()
    start = 1 if stripped[:1] in (b"-", b"+") else 0
    end = start
    while end < len(stripped) and 48 <= stripped[end] <= 57:
        end += 1
    if end == start:
        return 0
    value = int(stripped[start:end]) if end - start <= 19 else LONG_MAX
    value = min(value, LONG_MAX)
    return -value if stripped[:1] == b"-" else value


def seconds(text: bytes) -> float | None:
    """A duration in decimal seconds (``2``, ``0.25``), finite and not negative; None for
    anything else (spoolgear's own packets are strict: no C reading to follow)."""
    try:
        value = float(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if 0 <= value < math.inf else None
