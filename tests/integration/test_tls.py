"""TLS on the Gearman port: a real broker with trustme certificates, standard TLS
clients (Python's ssl, openssl s_client, pygearman) and spoolgear's own client,
worker, admin client and CLI."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import ssl
import subprocess
import threading
import warnings
from collections.abc import Iterator

import gearman
import pytest
import trustme

from broker.admin import AdminClient
from broker.client import Client
from broker.errors import ConnectionFailed
from broker.protocol.packets import PacketType
from broker.tls import TLSFiles
from broker.worker import Worker, WorkerJob
from tests.helpers import (
    ROOT,
    SPOOLGEAR,
    RawConnection,
    require_peer,
    run_broker,
    wait_until,
)
from tests.pki import PKI

T = PacketType


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


def _reverse(job: WorkerJob) -> bytes:
    return job.data[::-1]


@contextlib.contextmanager
def reversing(address: str, tls: TLSFiles) -> Iterator[None]:
    """A worker serving ``reverse`` over TLS, in a thread."""
    with Worker([address], tls=tls) as worker:
        worker.register("reverse", _reverse)
        thread = threading.Thread(target=worker.work, daemon=True)
        thread.start()
        try:
            yield
        finally:
            worker.stop()
            thread.join(10)


@pytest.mark.parametrize("key_type", [trustme.KeyType.RSA, trustme.KeyType.ECDSA])
def test_client_worker_and_admin_speak_tls_with_rsa_and_ec_keys(
    key_type: trustme.KeyType, tmp_path_factory: pytest.TempPathFactory
) -> None:
    keys = PKI(tmp_path_factory.mktemp(key_type.name), key_type)
    with run_broker(*keys.server_args()) as broker:
        address = f"127.0.0.1:{broker.tls_port}"
        with (
            reversing(address, keys.client("worker.example")),
            Client([address], timeout=10, tls=keys.client("app.example")) as client,
        ):
            assert client.submit("reverse", b"tls").data == b"slt"
        with AdminClient(address, tls=keys.client("ops.example")) as admin:
            assert [s.name for s in admin.status()] == ["reverse"]
            with RawConnection(broker.tls_port, keys.context()) as raw:
                assert raw.sock.version() in ("TLSv1.2", "TLSv1.3")
                assert raw.sock.cipher() is not None


def answers_version(port: int, context: ssl.SSLContext | None) -> bool:
    """Whether the broker answers ``version`` on a connection made with ``context``
    (TLS 1.3 reports a refused client certificate only at the first read)."""
    try:
        with RawConnection(port, context) as connection:
            connection.send_raw(b"version\n")
            return connection.sock.recv(10).startswith(b"OK ")
    except (ssl.SSLError, ConnectionError):
        return False


def test_the_tls_port_never_serves_plaintext_and_checks_certificates(pki: PKI) -> None:
    stranger = PKI(pki.directory / "stranger").client("stranger.example")  # another CA
    from_another_ca = ssl.create_default_context(cafile=str(pki.ca_file))
    from_another_ca.load_cert_chain(stranger.certificate, stranger.key)
    with run_broker(*pki.server_args(), "--verbose", "warning") as broker:
        assert answers_version(broker.tls_port, pki.context())
        assert not answers_version(broker.tls_port, None)  # plaintext
        assert not answers_version(broker.tls_port, pki.context(None))  # no certificate
        assert not answers_version(broker.tls_port, from_another_ca)
    failures = broker.log.split("TLS handshake with 127.0.0.1 on the Gearman port failed: ")
    assert len(failures) == 2  # the same peer: once per 10 s, the rest counted
    assert "WRONG_VERSION_NUMBER" in failures[1]


def test_tls_older_than_1_2_is_refused(pki: PKI) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.check_hostname = False
        old.verify_mode = ssl.CERT_NONE
        old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this side offer TLS 1.1 at all
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    with run_broker(*pki.server_args(), "--verbose", "warning") as broker:
        assert not answers_version(broker.tls_port, old)
    assert "UNSUPPORTED_PROTOCOL" in broker.log  # the broker refused it, not this side


def test_without_a_ca_file_any_client_may_connect_and_the_broker_is_still_verified(
    pki: PKI,
) -> None:
    with run_broker(*pki.server_args(verify_clients=False)) as broker:
        with RawConnection(broker.tls_port, pki.context(None)) as anonymous:
            assert anonymous.admin(b"version\n").startswith(b"OK ")
        with pytest.raises(ssl.SSLCertVerificationError):
            RawConnection(broker.tls_port, ssl.create_default_context())  # not our CA


def test_openssl_s_client_is_a_client_like_any_other(pki: PKI) -> None:
    openssl = require_peer("openssl")
    client = pki.client("client.example")
    with run_broker(*pki.server_args()) as broker:
        s_client = subprocess.Popen(
            [
                openssl,
                "s_client",
                "-quiet",
                "-verify_return_error",
                "-connect",
                f"127.0.0.1:{broker.tls_port}",
                "-CAfile",
                client.ca_file,
                "-cert",
                client.certificate,
                "-key",
                client.key,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert s_client.stdin is not None and s_client.stdout is not None
        s_client.stdin.write(b"version\n")
        s_client.stdin.flush()
        answer = s_client.stdout.readline()
        s_client.kill()
        s_client.communicate()
    assert answer.startswith(b"OK "), answer


def test_pygearman_over_tls(pki: PKI) -> None:
    files = pki.client("pygearman.example")
    with run_broker(*pki.server_args()) as broker:
        server = {
            "host": "127.0.0.1",
            "port": broker.tls_port,
            "keyfile": files.key,
            "certfile": files.certificate,
            "ca_certs": files.ca_file,
        }
        with reversing(f"127.0.0.1:{broker.tls_port}", pki.client("worker.example")):
            client = gearman.GearmanClient([server])
            connection = client.connection_list[0]
            client.establish_connection(connection)
            # pygearman reads before it writes and spins on SSL_ERROR_WANT_READ, so a TLS
            # record arriving before its first request (a TLS 1.3 session ticket) would
            # stall it for good: the broker sends nothing unasked.
            readable, _, _ = select.select([connection.gearman_socket], [], [], 0.5)
            assert not readable
            request = client.submit_job("reverse", b"pygearman", poll_timeout=10)
            assert request.result == b"namraegyp"
            client.shutdown()


def test_plaintext_and_tls_listeners_side_by_side(pki: PKI) -> None:
    """A loopback plaintext port for clients not moved to TLS yet, as the README shows."""
    args = [*pki.server_args(), "--plain-listen", "127.0.0.1:0"]
    with run_broker(*args) as broker:
        assert broker.port not in (0, broker.tls_port)
        with Client([broker.address]) as plain:
            plain.submit_background("both", b"from plaintext")
        with Client([f"127.0.0.1:{broker.tls_port}"], tls=pki.client("a.example")) as secure:
            secure.submit_background("both", b"from tls")
        with AdminClient(broker.address) as admin:
            assert [(s.name, s.total) for s in admin.status()] == [("both", 2)]


def test_libgearman_tools_from_debian_send_plaintext_even_with_ssl(pki: PKI) -> None:
    """Debian builds libgearman without TLS: ``gearadmin --ssl`` and ``gearman -S`` send
    plaintext. The TLS port refuses them (logged); the plaintext listener serves them."""
    gearadmin = require_peer("gearadmin")
    client = pki.client("tools.example")
    environment = {
        **os.environ,
        "GEARMAND_CA_CERTIFICATE": client.ca_file,
        "GEARMAN_CLIENT_PEM": client.certificate,
        "GEARMAN_CLIENT_KEY": client.key,
    }
    plain = ["--plain-listen", "127.0.0.1:0", "--verbose", "warning"]
    with run_broker(*pki.server_args(), *plain) as broker:
        refused = subprocess.run(
            [gearadmin, "--ssl", "-h", "127.0.0.1", "-p", str(broker.tls_port), "--status"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=20,
        )
        served = subprocess.run(
            [gearadmin, "-h", "127.0.0.1", "-p", str(broker.port), "--server-version"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert refused.returncode != 0 or refused.stdout == ""
    assert served.stdout.startswith("1.1.20+spoolgear"), served
    assert "TLS handshake with 127.0.0.1 on the Gearman port failed" in broker.log


def test_sighup_rereads_the_certificates_for_new_connections(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    old = PKI(tmp_path_factory.mktemp("old"))
    new = PKI(tmp_path_factory.mktemp("new"))
    with run_broker(*old.server_args(), "--verbose", "info") as broker:
        established = RawConnection(broker.tls_port, old.context())
        for source, target in ((new.certificate, old.certificate), (new.key, old.key)):
            target.write_bytes(source.read_bytes())
        old.ca_file.write_bytes(new.ca_file.read_bytes())
        broker.process.send_signal(signal.SIGHUP)

        def new_files_served() -> bool:
            try:
                RawConnection(broker.tls_port, new.context()).close()
            except (ssl.SSLError, ConnectionError):
                return False
            return True

        wait_until(new_files_served)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            RawConnection(broker.tls_port, PKI(old.directory / "again").context())
        assert established.admin(b"version\n").startswith(b"OK ")  # untouched
        established.close()
        old.key.write_text("not a key")
        broker.process.send_signal(signal.SIGHUP)
        with RawConnection(broker.tls_port, new.context()) as still:
            assert still.admin(b"version\n").startswith(b"OK ")
    assert "reloaded the TLS and permissions files" in broker.log
    assert "reload failed, keeping the loaded files: cannot load --ssl-certificate" in broker.log


def test_cli_commands_take_the_tls_options(pki: PKI) -> None:
    files = pki.client("cli.example")
    with run_broker(*pki.server_args()) as broker:
        server = f"127.0.0.1:{broker.tls_port}"
        tls = ["--ssl", "--ssl-ca-file", files.ca_file]
        identity = ["--ssl-certificate", files.certificate, "--ssl-key", files.key]
        submitted = _spoolgear("submit", "-s", server, *tls, *identity, "-b", "mail", "hi")
        assert submitted.returncode == 0, submitted.stderr
        by_environment = {
            "GEARMAND_CA_CERTIFICATE": files.ca_file,
            "GEARMAN_CLIENT_PEM": files.certificate,
            "GEARMAN_CLIENT_KEY": files.key,
        }
        status = _spoolgear("status", "-s", server, "--ssl", environment=by_environment)
        assert "mail" in status.stdout, status.stderr
        stray = _spoolgear("status", "-s", server, "--ssl-ca-file", files.ca_file)
        assert stray.returncode != 0
        assert "--ssl-ca-file given without --ssl" in stray.stderr
        plaintext = _spoolgear("status", "-s", server)
        assert plaintext.returncode != 0 and "closed the connection" in plaintext.stderr


def test_a_client_checks_that_the_broker_certificate_names_the_host(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    elsewhere = PKI(tmp_path_factory.mktemp("elsewhere"), broker_names=("broker.example",))
    with run_broker(*elsewhere.server_args()) as broker:
        client = Client([f"127.0.0.1:{broker.tls_port}"], tls=elsewhere.client("x.example"))
        with pytest.raises(ConnectionFailed, match=r"TLS with 127\.0\.0\.1.*match"):
            client.submit_background("f", b"")


def _spoolgear(
    *args: str, environment: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SPOOLGEAR, *args],
        cwd=ROOT,
        env={**os.environ, **(environment or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )
