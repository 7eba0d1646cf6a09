"""Test certificates from trustme: a CA, a broker certificate for 127.0.0.1 and
localhost, and client certificates by name, as PEM files in a directory."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme

from broker.tls import TLSFiles


class PKI:
    def __init__(
        self,
        directory: Path,
        key_type: trustme.KeyType = trustme.KeyType.RSA,
        broker_names: tuple[str, ...] = ("127.0.0.1", "localhost"),
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.key_type = key_type
        self.ca = trustme.CA(key_type=key_type)
        self.ca_file = directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.certificate, self.key = self._issue("broker", *broker_names)

    def _issue(self, stem: str, *names: str, common_name: str | None = None) -> tuple[Path, Path]:
        issued = self.ca.issue_cert(*names, common_name=common_name, key_type=self.key_type)
        certificate, key = self.directory / f"{stem}.pem", self.directory / f"{stem}.key"
        issued.cert_chain_pems[0].write_to_path(str(certificate))
        issued.private_key_pem.write_to_path(str(key))
        return certificate, key

    def server_args(self, *, verify_clients: bool = True) -> list[str]:
        """``spoolgear serve`` options for a TLS Gearman port with these files."""
        args = ["--ssl", "--ssl-certificate", str(self.certificate), "--ssl-key", str(self.key)]
        return args + (["--ssl-ca-file", str(self.ca_file)] if verify_clients else [])

    def client(self, name: str) -> TLSFiles:
        """Files for a client whose certificate carries ``name`` (CN and DNS name)."""
        stem = "client-" + name.replace("/", "_")
        if not (self.directory / f"{stem}.pem").exists():
            self._issue(stem, name, common_name=name)
        return TLSFiles(
            str(self.ca_file),
            str(self.directory / f"{stem}.pem"),
            str(self.directory / f"{stem}.key"),
        )

    def context(self, name: str | None = "client.example") -> ssl.SSLContext:
        """A client context trusting this CA, presenting ``name``'s certificate (if any)."""
        if name is None:
            return TLSFiles(str(self.ca_file)).client_context()
        return self.client(name).client_context()
