"""nginx from Debian as the sender on the TLS uwsgi door: ``uwsgi_pass suwsgi://`` with
``uwsgi_modifier1 17`` turns each HTTP request into a spool packet over TLS, verified
both ways (nginx checks the broker's certificate, the broker checks nginx's)."""

from __future__ import annotations

import contextlib
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.protocol.uwsgi import decode_spool
from tests.helpers import (
    burst_drain,
    free_port,
    require_peer,
    run_broker,
    run_peer,
    uwsgi_exchange,
)
from tests.pki import PKI


@contextlib.contextmanager
def run_nginx(directory: Path, door: str, pki: PKI) -> Iterator[int]:
    """nginx in the foreground on a free port, passing /spool to the suwsgi ``door``."""
    binary = require_peer("nginx")
    port = free_port()
    identity = pki.client("nginx.example")
    config = directory / "nginx.conf"
    config.write_text(
        textwrap.dedent(
            f"""
            daemon off;
            master_process off;
            pid {directory}/nginx.pid;
            error_log {directory}/error.log info;
            events {{ worker_connections 64; }}
            http {{
                access_log off;
                client_body_temp_path {directory}/body;
                proxy_temp_path {directory}/proxy;
                fastcgi_temp_path {directory}/fastcgi;
                uwsgi_temp_path {directory}/uwsgi;
                scgi_temp_path {directory}/scgi;
                server {{
                    listen 127.0.0.1:{port};
                    location /spool {{
                        uwsgi_pass suwsgi://{door};
                        uwsgi_modifier1 17;
                        uwsgi_param ud_spool_func mail;
                        uwsgi_param to $arg_to;
                        uwsgi_ssl_verify on;
                        uwsgi_ssl_name localhost;
                        uwsgi_ssl_trusted_certificate {pki.ca_file};
                        uwsgi_ssl_certificate {identity.certificate};
                        uwsgi_ssl_certificate_key {identity.key};
                    }}
                }}
            }}
            """
        )
    )
    with run_peer([binary, "-p", str(directory), "-c", str(config)], port):
        yield port


def test_nginx_spools_over_tls_to_the_suwsgi_door(tmp_path: Path) -> None:
    pki = PKI(tmp_path / "pki")
    args = ["--suwsgi-socket", "127.0.0.1:0", "--ssl-certificate", str(pki.certificate)]
    args += ["--ssl-key", str(pki.key), "--ssl-ca-file", str(pki.ca_file)]
    with (
        run_broker(*args, "--verbose", "warning") as broker,
        run_nginx(tmp_path, broker.suwsgi[0], pki) as port,
    ):
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/spool?to=ada", timeout=10)
        # The door answers uWSGI's 4-byte "spooled", which is not HTTP: nginx says 502, as
        # it does in front of uWSGI's own spooler.
        assert answer.value.code == 502
        answer.value.close()
        [(_, payload)] = burst_drain(broker.address, "mail")
        assert (b"to", b"ada") in decode_spool(payload)[0]
        plaintext = b"\x11\x07\x00\x00\x01\x00a\x01\x00b"  # a spool packet, {a: b}
        assert uwsgi_exchange(broker.suwsgi[0], plaintext) == b""
    assert "TLS handshake with 127.0.0.1 on the uwsgi door failed" in broker.log
    nginx_log = (tmp_path / "error.log").read_text(errors="replace")
    assert "upstream sent" in nginx_log  # the 4-byte answer arrived over TLS
