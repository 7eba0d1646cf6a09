"""Where a function is defined, so that two handlers or tasks claiming one name are refused.

The same definition seen again (a module imported twice) is not a duplicate;
a second function under the name is, even in the same module, where the
later one would otherwise silently replace the first.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, MutableMapping
from typing import Any, TypeVar

T = TypeVar("T")


def defined_at(function: Callable[..., Any]) -> tuple[str, str, int]:
    """Module, qualified name and first line of the function under any decorators."""
    code = getattr(inspect.unwrap(function), "__code__", None)
    line = code.co_firstlineno if code is not None else 0
    return str(function.__module__), function.__qualname__, line


def describe(function: Callable[..., Any]) -> str:
    module, qualname, line = defined_at(function)
    return f"{module}.{qualname} (line {line})"


def claim(
    registry: MutableMapping[str, T],
    name: str,
    entry: T,
    function_of: Callable[[T], Callable[..., Any]],
    what: str,
) -> None:
    """Record ``entry`` under ``name``; ValueError when another function holds the name."""
    known = registry.get(name)
    if known is not None and defined_at(function_of(known)) != defined_at(function_of(entry)):
        raise ValueError(
            f"two {what} are named {name!r}: {describe(function_of(known))} and "
            f"{describe(function_of(entry))}; rename one or give it name=..."
        )
    registry[name] = entry
