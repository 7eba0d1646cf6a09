"""TLS for both ends of a Gearman or uwsgi connection, on the standard library's ``ssl``.

The broker's side fails closed: a certificate or key that cannot be loaded stops
start-up with the file's name and the reason. With a CA file every client must
present a certificate that chains to it (libgearman's tools always send one), and
the names in that certificate (its subject's common name and DNS names) are what
``--admin-allow-name`` and ``--permissions`` match. TLS 1.2 is the oldest version
spoken. ``reload()`` re-reads the files for connections accepted afterwards (SIGHUP).
"""

from __future__ import annotations

import argparse
import os
import ssl
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from broker.errors import ConfigurationError

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2

# libgearman's client-side environment (gearman -S, gearadmin --ssl), read by spoolgear's
# own clients as well: the CA that signed the broker's certificate, our certificate and key.
CLIENT_ENVIRONMENT = {
    "ca_file": "GEARMAND_CA_CERTIFICATE",
    "certificate": "GEARMAN_CLIENT_PEM",
    "key": "GEARMAN_CLIENT_KEY",
}


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """Where a TLS end finds its trust anchors, certificate and key (PEM files)."""

    ca_file: str = ""
    certificate: str = ""
    key: str = ""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> TLSFiles:
        """The files named by libgearman's client variables (unset ones stay empty)."""
        return cls(**{field: environ.get(name, "") for field, name in CLIENT_ENVIRONMENT.items()})

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str) -> TLSFiles:
        """From settings such as ``{"ca_file": ..., "certificate": ..., "key": ...}``."""
        unknown = set(values) - {"ca_file", "certificate", "key"}
        if unknown:
            raise ConfigurationError(
                f"{where}: unknown keys {sorted(unknown)}; expected ca_file, certificate, key"
            )
        return cls(**{key: str(value) for key, value in values.items()})

    def client_options(self) -> list[str]:
        """The command-line options of a client command (``add_client_options``)."""
        given = asdict(self).items()
        return [
            "--ssl",
            *(f"--ssl-{name.replace('_', '-')}={path}" for name, path in given if path),
        ]

    def client_context(self) -> ssl.SSLContext:
        """A client's context: the broker's certificate must chain to ``ca_file`` (or to
        the system's trust store) and name the host connected to; ours is presented
        when given."""
        try:
            context = ssl.create_default_context(cafile=self.ca_file or None)
            context.minimum_version = MINIMUM_VERSION
            if self.certificate:
                context.load_cert_chain(self.certificate, self.key or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"TLS client files {self._described()}: {exc}") from exc
        return context

    def server_context(self) -> ssl.SSLContext:
        """A listener's context; every failure names the file at fault."""
        if not (self.certificate and self.key):
            raise ConfigurationError(
                "a TLS listener needs --ssl-certificate and --ssl-key "
                "(or GEARMAND_SERVER_PEM and GEARMAND_SERVER_KEY)"
            )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = MINIMUM_VERSION
        # No TLS 1.3 session tickets: Gearman connections are long-lived, so resumption
        # buys little, and a ticket arriving before a client's first request stalls
        # clients that read before they write (pygearman spins on it forever).
        context.num_tickets = 0
        try:
            context.load_cert_chain(self.certificate, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"cannot load --ssl-certificate {self.certificate} with --ssl-key {self.key}: {exc}"
            ) from exc
        if self.ca_file:
            try:
                context.load_verify_locations(self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigurationError(
                    f"cannot load --ssl-ca-file {self.ca_file}: {exc}"
                ) from exc
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def _described(self) -> str:
        given = asdict(self).items()
        return ", ".join(f"{name}={path}" for name, path in given if path) or "(none)"


class ServerTLS:
    """The context listeners are created with, and the files behind it.

    Asyncio keeps a listener's context for its lifetime, so the listener's context only
    hands each new handshake over to the newest loaded one (its server-name callback runs
    for every client hello, with or without SNI): ``reload()`` takes effect for the next
    connection and leaves established ones alone."""

    def __init__(self, files: TLSFiles) -> None:
        self.files = files
        self.listening = self.current = files.server_context()
        self.listening.sni_callback = self._hand_over

    def _hand_over(self, connection: ssl.SSLObject, _name: str | None, _ctx: Any) -> None:
        connection.context = self.current

    def reload(self) -> None:
        """Re-read the files; on failure the loaded ones stay in use (and the error rises)."""
        self.current = self.files.server_context()


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """``--ssl`` and its files, for the commands that connect to a broker."""
    group = parser.add_argument_group("TLS")
    group.add_argument("--ssl", action="store_true", help="connect with TLS (libgearman's -S)")
    for flag, field, what in (
        ("--ssl-ca-file", "ca_file", "CAs that sign the broker's certificate (else the system's)"),
        ("--ssl-certificate", "certificate", "our certificate, for a broker that asks for one"),
        ("--ssl-key", "key", "the key of --ssl-certificate"),
    ):
        variable = CLIENT_ENVIRONMENT[field]
        group.add_argument(flag, metavar="FILE", help=f"{what} (default: ${variable})")


def client_files(options: argparse.Namespace) -> TLSFiles | None:
    """The files ``add_client_options`` asked for (the libgearman variables fill in
    what is not given), or None without ``--ssl``."""
    given = {field: getattr(options, f"ssl_{field}") for field in CLIENT_ENVIRONMENT}
    if not options.ssl:
        stray = [field for field, value in given.items() if value]
        if stray:
            flag = "--ssl-" + stray[0].replace("_", "-")
            raise ConfigurationError(f"{flag} given without --ssl")
        return None
    environment = asdict(TLSFiles.from_environment())
    return TLSFiles(**{field: path or environment[field] for field, path in given.items()})


def peer_names(certificate: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The names a verified peer certificate carries: subject common names, then DNS
    names (``ssl.SSLSocket.getpeercert()``'s layout)."""
    if not certificate:
        return ()
    names = [
        value
        for relative_name in certificate.get("subject", ())
        for key, value in relative_name
        if key == "commonName"
    ]
    names += [value for kind, value in certificate.get("subjectAltName", ()) if kind == "DNS"]
    return tuple(dict.fromkeys(names))
