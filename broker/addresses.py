"""Server addresses as people write them: Gearman's ``host[:port]`` and uwsgi sockets."""

from __future__ import annotations

from broker.errors import ConfigurationError

DEFAULT_PORT = 4730
# Where clients, workers and admin tools look for a broker when told nowhere else.
DEFAULT_SERVER = f"127.0.0.1:{DEFAULT_PORT}"


def parse_address(text: str) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` to a (host, port) pair; port defaults to 4730."""
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port:
        return text.strip("[]"), DEFAULT_PORT
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ConfigurationError(f"bad server address {text!r}: port must be a number") from None


def uwsgi_address(address: str) -> tuple[str, int] | str:
    """``HOST:PORT`` to a TCP address, anything with a ``/`` to a unix socket path."""
    if "/" in address:
        return address
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigurationError(
            f"uwsgi address {address!r}: expected HOST:PORT or a unix socket path (with a '/')"
        )
    return host or "127.0.0.1", int(port)


def parse_listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (the port required) for a listener."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigurationError(f"listen address {text!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)
