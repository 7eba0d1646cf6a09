"""Real uWSGI (Debian uwsgi-core 2.0.21) and a Perl Net::uwsgi-style sender as peers."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.admin import AdminClient
from broker.protocol.uwsgi import decode_spool, encode_spool
from tests.helpers import (
    ROOT,
    SPOOLGEAR,
    burst_drain,
    free_port,
    require_peer,
    run_broker,
    run_peer,
    uwsgi_exchange,
    wait_for_port,
    wait_until,
)

PEERS = Path(__file__).parent / "peers"


@contextlib.contextmanager
def run_uwsgi(*args: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A uWSGI instance serving HTTP on ``port`` (its log goes to the test's output)."""
    binary = require_peer("uwsgi")
    command = [binary, "--http-socket", f"127.0.0.1:{port}", "--master", "--processes", "1"]
    # uWSGI 2.0 takes SIGTERM as "reload"; SIGINT stops it.
    with run_peer([*command, "--disable-logging", *args], port, stop=signal.SIGINT) as process:
        yield process


def http_get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return bytes(response.read())
    except (urllib.error.URLError, ConnectionError):
        return b""  # uWSGI's router answers a spool route with an empty reply


def jobs(address: str, function: str) -> list[dict[bytes, bytes]]:
    """The vars of each job of ``function``, run once each."""
    return [dict(decode_spool(data)[0]) for _, data in burst_drain(address, function)]


def test_perl_net_uwsgi_style_sender_reads_the_answers() -> None:
    perl = require_peer("perl")
    with run_broker("--uwsgi-socket", "127.0.0.1:0") as broker:

        def spool(*pairs: str) -> str:
            return subprocess.run(
                [perl, str(PEERS / "uwsgi_spool.pl"), broker.uwsgi[0], *pairs],
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            ).stdout.strip()

        assert spool("ud_spool_func=mail", "to=perl@example.org") == "1"
        assert spool("priority=../../etc") == "0"
        assert jobs(broker.address, "mail") == [
            {b"ud_spool_func": b"mail", b"to": b"perl@example.org"}
        ]


def test_uwsgi_internal_routing_spools_a_request_to_the_broker() -> None:
    """--route "... uwsgi:HOST:PORT,17,0": the request's CGI vars arrive as a spool packet."""
    with run_broker("--uwsgi-socket", "127.0.0.1:0") as broker:
        port = free_port()
        with run_uwsgi(
            "--plugin",
            "router_uwsgi",
            "--route",
            f"^/enqueue uwsgi:{broker.uwsgi[0]},17,0",
            port=port,
        ):
            http_get(f"http://127.0.0.1:{port}/enqueue?report=42")
            deadline = time.monotonic() + 10
            with AdminClient(broker.address) as admin:
                while not admin.status() and time.monotonic() < deadline:
                    time.sleep(0.05)
        received = jobs(broker.address, "uwsgi_spooler")
    assert len(received) == 1
    assert received[0][b"PATH_INFO"] == b"/enqueue"
    assert received[0][b"QUERY_STRING"] == b"report=42"
    assert received[0][b"REQUEST_METHOD"] == b"GET"


APP = """
    import uwsgi

    def application(env, start_response):
        path = uwsgi.spool({b"ud_spool_func": b"mail", b"to": env["QUERY_STRING"].encode(),
                            b"body": b"\\x00\\xffbinary attachment"})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [path]
"""

HANDLERS = """
    import os
    from broker.uwsgidecorators import spool

    @spool
    def mail(env):
        with open(os.environ["SPOOL_LOG"], "a") as log:
            log.write(repr((env["to"], env["body"])) + "\\n")
"""


def test_uwsgi_spool_into_an_ingested_directory_runs_in_spoolgear(tmp_path: Path) -> None:
    """An unchanged uWSGI app spools with --spooler-external; spoolgear ingests and runs it."""
    spool = tmp_path / "spool"
    spool.mkdir()
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "handlers.py").write_text(textwrap.dedent(HANDLERS))
    with run_broker(
        "--store",
        f"sqlite:{tmp_path / 'db'}",
        "--spool-ingest",
        str(spool),
        "--ingest-interval",
        "0.05",
    ) as broker:
        port = free_port()
        with run_uwsgi(
            "--plugin",
            "python3",
            "--spooler-external",
            str(spool),
            "--wsgi-file",
            str(tmp_path / "app.py"),
            port=port,
        ):
            for person in (b"a@example.org", b"b@example.org"):
                path = http_get(f"http://127.0.0.1:{port}/?{person.decode()}")
                assert path.startswith(str(spool).encode() + b"/uwsgi_spoolfile_on_")
        # Taken, stored, and deleted once the store has them (status counts them sooner).
        wait_until(lambda: list(spool.iterdir()) == [])
        with AdminClient(broker.address) as admin:
            assert sum(s.total for s in admin.status()) == 2
        log = tmp_path / "log"
        subprocess.run(
            [*SPOOLGEAR, "spooler", "--import", "handlers", "-s", broker.address, "--burst"],
            cwd=tmp_path,
            check=True,
            timeout=60,
            capture_output=True,
            env={"SPOOL_LOG": str(log), "PYTHONPATH": str(ROOT)},
        )
    assert sorted(log.read_text().splitlines()) == [
        "('a@example.org', b'\\x00\\xffbinary attachment')",
        "('b@example.org', b'\\x00\\xffbinary attachment')",
    ]


@pytest.mark.parametrize(
    ("packet", "answer"),
    [
        (encode_spool([(b"k", b"v")]), b"\xff\x00\x00\x01"),
        (encode_spool([]), b"\xff\x00\x00\x01"),
        (encode_spool([(b"k", b"v" * 4091)]), b"\xff\x00\x00\x01"),  # datasize 4096: the limit
        (encode_spool([(b"k", b"v" * 4092)]), b""),  # one byte over --buffer-size 4096
    ],
)
def test_answers_match_a_real_uwsgi_spooler(tmp_path: Path, packet: bytes, answer: bytes) -> None:
    """The same packet to uWSGI's spooler plugin and to spoolgear gets the same bytes back."""
    binary = require_peer("uwsgi")
    port = free_port()
    (tmp_path / "spool").mkdir()
    process = subprocess.Popen(
        [
            binary,
            "--plugin",
            "spooler",
            "--socket",
            f"127.0.0.1:{port}",
            "--spooler",
            str(tmp_path / "spool"),
            "--master",
            "--spooler-quiet",
            "--disable-logging",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        from_uwsgi = uwsgi_exchange(f"127.0.0.1:{port}", packet)
    finally:
        process.send_signal(signal.SIGINT)  # uWSGI 2.0 takes SIGTERM as "reload"
        process.wait(timeout=10)
    with run_broker("--uwsgi-socket", "127.0.0.1:0", "--uwsgi-max-size", "4096") as broker:
        from_spoolgear = uwsgi_exchange(broker.uwsgi[0], packet)
    assert from_uwsgi == from_spoolgear == answer
