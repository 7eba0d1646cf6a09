"""Who may do what, by the peer's address.

``--allow`` limits who may connect at all, on every door; ``--admin-allow``
who may run the admin commands that change state or list job identities
(control); anyone who may connect may read (``status``, ``workers``...). A
peer on a unix socket is on this machine and is let in: the socket file's
permissions guard it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

UNIX_PEER = "unix"
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")


def parse_networks(specs: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (or single addresses) to networks; ``ValueError`` names a bad one."""
    networks = []
    for spec in specs:
        try:
            networks.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{spec!r} is not an address or a CIDR network") from None
    return tuple(networks)


class Allowed:
    """A list of networks; ``host in allowed`` for a peer's address text. An empty list
    lets nobody in over the network; ``Allowed.anyone()`` lets everyone in."""

    def __init__(self, specs: Iterable[str], *, anyone: bool = False) -> None:
        self.networks = parse_networks(specs)
        self.anyone = anyone

    @classmethod
    def everyone(cls) -> Allowed:
        return cls((), anyone=True)

    def __contains__(self, host: str) -> bool:
        if self.anyone or host == UNIX_PEER:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)


LOOPBACK = Allowed(LOOPBACK_NETWORKS)


CONTROL_COMMANDS = (
    b"cancel",
    b"create",
    b"drop",
    b"retry",
    b"shutdown",
    b"pause",
    b"resume",
    b"limit",
)
"""Admin commands that always change state."""


def is_control(words: list[bytes]) -> bool:
    """Whether an admin command (already split in words) changes state or lists job
    identities; the rest only read."""
    name = words[0].lower()
    if name in CONTROL_COMMANDS:
        return True
    if name in (b"maxqueue", b"verbose"):
        return len(words) > 1  # with a function or a level: a change
    if name == b"show":
        return [word.lower() for word in words[1:]] in ([b"jobs"], [b"unique", b"jobs"])
    return False
