"""Who may work on what: which functions a peer may submit to, work on and schedule,
by the verified names of its TLS certificate (``--permissions FILE``).

The file is TOML, one table per certificate name; ``"*"`` is every peer that matches
no table, with or without a certificate. Patterns are ``fnmatch`` ones; an action a
table does not list is refused::

    [peer."billing.example.com"]
    submit = ["billing.*"]
    work = ["billing.*"]
    schedule = ["billing.report"]

    [peer."*"]
    submit = ["public.*"]

A peer with several matching names may do what any of them may. Without the option
everyone may do everything, as in gearmand.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

ACTIONS = ("submit", "work", "schedule")
ANY_PEER = "*"
_VERBS = {"submit": b"submit to", "work": b"work on", "schedule": b"schedule"}

log = logging.getLogger("spoolgear.permissions")


@dataclass(frozen=True, slots=True)
class Permits:
    """The function patterns one peer may use, per action."""

    submit: tuple[bytes, ...] = ()
    work: tuple[bytes, ...] = ()
    schedule: tuple[bytes, ...] = ()

    def allows(self, action: str, function: bytes) -> bool:
        patterns: tuple[bytes, ...] = getattr(self, action)
        return any(fnmatchcase(function, pattern) for pattern in patterns)

    def joined(self, other: Permits) -> Permits:
        return Permits(*[getattr(self, a) + getattr(other, a) for a in ACTIONS])


@dataclass(frozen=True, slots=True)
class Permissions:
    by_name: dict[str, Permits] = field(default_factory=dict)

    @classmethod
    def from_toml(cls, text: str) -> Permissions:
        """Parse the file's text; ``ValueError`` says what is wrong and where."""
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"not TOML: {exc}") from None
        unknown = set(document) - {"peer"}
        if unknown:
            raise ValueError(f'unknown tables {sorted(unknown)}: expected [peer."NAME"] tables')
        peers = document.get("peer", {})
        if not isinstance(peers, dict):
            raise ValueError('peer must be a table of [peer."NAME"] tables')
        return cls({name: _permits(name, table) for name, table in peers.items()})

    def for_names(self, names: tuple[str, ...]) -> Permits:
        """What a peer with these certificate names may do."""
        tables = [self.by_name[name] for name in names if name in self.by_name]
        if not tables:
            return self.by_name.get(ANY_PEER, Permits())
        permits = tables[0]
        for table in tables[1:]:
            permits = permits.joined(table)
        return permits


def refusal(action: str, function: bytes, host: str, names: tuple[str, ...]) -> bytes:
    """The ERROR text for a refused action, after logging it with the peer."""
    log.warning(
        "refused %s %s %r: --permissions does not allow it for %s",
        host,
        action,
        function.decode("utf-8", "replace"),
        ", ".join(names) or "a peer without a certificate",
    )
    return b"not allowed to %s %s" % (_VERBS[action], function)


def _permits(name: str, table: Any) -> Permits:
    where = f'[peer."{name}"]'
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table")
    unknown = set(table) - set(ACTIONS)
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; expected {', '.join(ACTIONS)}")
    patterns = {}
    for action, values in table.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"{where} {action} must be a list of function name patterns")
        patterns[action] = tuple(value.encode() for value in values)
    return Permits(**patterns)
