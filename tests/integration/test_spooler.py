"""``spoolgear spooler``: uWSGI-style handlers in a real spooler process, a real broker."""

from __future__ import annotations

import importlib.util
import pickle
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from broker import uwsgidecorators
from broker.admin import AdminClient
from broker.client import Client
from broker.protocol.uwsgi import encode_spool
from broker.uwsgi_client import send_spool
from tests.helpers import ROOT, SPOOLGEAR, run_broker
from tests.pki import PKI

HANDLERS = """
    import os
    from broker.uwsgidecorators import SPOOL_IGNORE, SPOOL_OK, SPOOL_RETRY, spool, spoolraw

    def note(*record):
        with open(os.environ["SPOOL_LOG"], "a") as log:
            log.write(repr(record) + "\\n")

    @spool
    def mail(env):
        env.pop("spooler_task_name")
        note("mail", sorted(env.items()))

    @spool(pass_arguments=True)
    def add(a, b, *, c=0):
        note("add", a + b + c)

    @spoolraw
    def flaky(env):
        note("flaky")
        return SPOOL_RETRY

    @spool
    def explode(env):
        note("explode")
        raise RuntimeError("disk full")

    def spooler(env):
        note("first", sorted((k, v) for k, v in env.items() if k != "spooler_task_name"))
        return SPOOL_IGNORE if b"pass" in env else SPOOL_OK
"""

SECOND = """
    import os
    from broker.uwsgidecorators import SPOOL_OK

    def spooler(env):
        with open(os.environ["SPOOL_LOG"], "a") as log:
            log.write(repr(("second", env[b"pass"])) + "\\n")
        return SPOOL_OK
"""


@pytest.fixture
def handlers(tmp_path: Path) -> Iterator[ModuleType]:
    """The handler modules on disk, and the first one imported here to produce jobs."""
    (tmp_path / "handlers.py").write_text(textwrap.dedent(HANDLERS))
    (tmp_path / "second.py").write_text(textwrap.dedent(SECOND))
    spec = importlib.util.spec_from_file_location("handlers", tmp_path / "handlers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    for name in ("mail", "add", "flaky", "explode"):
        uwsgidecorators.spool_functions.pop(name, None)


def run_spooler(tmp_path: Path, address: str, *args: str) -> list[tuple[object, ...]]:
    """Serve the queued jobs with a burst spooler process; returns what the handlers noted."""
    log = tmp_path / "log"
    log.unlink(missing_ok=True)
    result = subprocess.run(
        [
            *SPOOLGEAR,
            "spooler",
            "--import",
            "handlers",
            "--import",
            "second.py",
            "-s",
            address,
            "--burst",
            "--retry-delay",
            "0",
            *args,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"SPOOL_LOG": str(log), "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    return [eval(line) for line in log.read_text().splitlines()] if log.exists() else []


def failed(address: str) -> dict[str, str]:
    with AdminClient(address) as admin:
        return {record.function: record.error for record in admin.show_failed()}


def test_handlers_get_what_uwsgi_would_pass_them(tmp_path: Path, handlers: ModuleType) -> None:
    with run_broker("--uwsgi-socket", "127.0.0.1:0") as broker:
        send_spool(
            broker.uwsgi[0],
            {b"ud_spool_func": b"mail", b"to": b"a@example.org", b"blob": b"\xff\xfe"},
        )
        send_spool(broker.uwsgi[0], {b"REQUEST_METHOD": b"GET", b"QUERY_STRING": b"id=7"})
        uwsgidecorators.configure([broker.address])
        handlers.add.spool(1, 2, c=3)
        handlers.mail({"to": "b@example.org"}, n=5)
        notes = run_spooler(tmp_path, broker.address)
        assert failed(broker.address) == {}
    assert len(notes) == 4  # each job once; functions are served round-robin
    assert (
        "mail",
        [("blob", b"\xff\xfe"), ("to", "a@example.org"), ("ud_spool_func", "mail")],
    ) in notes
    assert ("first", [(b"QUERY_STRING", b"id=7"), (b"REQUEST_METHOD", b"GET")]) in notes
    assert ("add", 6) in notes
    assert (
        "mail",
        [("n", "5"), ("to", "b@example.org"), ("ud_spool_func", "mail"), ("ud_spool_ret", "-2")],
    ) in notes


def test_retries_are_bounded_and_end_in_the_failed_list(
    tmp_path: Path, handlers: ModuleType
) -> None:
    with run_broker("--uwsgi-socket", "127.0.0.1:0") as broker:
        for name in (b"flaky", b"explode"):
            send_spool(broker.uwsgi[0], {b"ud_spool_func": name})
        notes = run_spooler(tmp_path, broker.address, "--attempts", "3")
        errors = failed(broker.address)
    assert notes.count(("flaky",)) == 3
    assert notes.count(("explode",)) == 3
    assert "gave up after 3 attempts: handler returned -1" in errors["flaky"]
    assert "RuntimeError: disk full" in errors["explode"]


def test_ignored_jobs_go_to_the_next_handler(tmp_path: Path, handlers: ModuleType) -> None:
    with run_broker("--uwsgi-socket", "127.0.0.1:0") as broker:
        send_spool(broker.uwsgi[0], {b"pass": b"on"})
        notes = run_spooler(tmp_path, broker.address)
    assert notes == [("first", [(b"pass", b"on")]), ("second", b"on")]


def test_pickled_arguments_need_an_explicit_opt_in(tmp_path: Path, handlers: ModuleType) -> None:
    """A job as the real uwsgidecorators writes it with pass_arguments=True."""
    payload = encode_spool(
        [
            (b"ud_spool_func", b"add"),
            (b"ud_spool_ret", b"-2"),
            (b"args", pickle.dumps((1, 2))),
            (b"kwargs", pickle.dumps({"c": 4})),
        ]
    )
    with run_broker() as broker:
        with Client([broker.address]) as client:
            client.submit_background("add", payload)
        assert run_spooler(tmp_path, broker.address) == []
        assert "--allow-pickle" in failed(broker.address)["add"]
        with AdminClient(broker.address) as admin:
            admin.retry_failed("all")
        assert run_spooler(tmp_path, broker.address, "--allow-pickle") == [("add", 7)]


def test_named_spoolers_are_served_only_when_asked(tmp_path: Path, handlers: ModuleType) -> None:
    with run_broker("--uwsgi-socket", "127.0.0.1:0") as broker:
        send_spool(broker.uwsgi[0], {b"ud_spool_func": b"mail", b"spooler": b"bulk"})
        send_spool(broker.uwsgi[0], {b"ud_spool_func": b"mail", b"spooler": b"/var/spool/x"})
        send_spool(broker.uwsgi[0], {b"ud_spool_func": b"mail", b"to": b"unnamed"})
        assert run_spooler(tmp_path, broker.address, "--queue", "bulk") == [
            ("mail", [("spooler", "bulk"), ("ud_spool_func", "mail")])
        ], "bulk only"
        assert run_spooler(tmp_path, broker.address) == [
            ("mail", [("to", "unnamed"), ("ud_spool_func", "mail")])
        ], "the unnamed only"
        assert run_spooler(
            tmp_path, broker.address, "--queue", "/var/spool/x", "--queue", "default"
        ) == [("mail", [("spooler", "/var/spool/x"), ("ud_spool_func", "mail")])]


def test_django_tasks_in_a_handler_module_are_refused_and_handlers_may_use_the_orm(
    tmp_path: Path,
) -> None:
    project = ROOT / "tests" / "django_project"
    env = {
        "PYTHONPATH": f"{ROOT}:{project}",
        "DJANGO_SETTINGS_MODULE": "testsite.settings",
        "SPOOL_LOG": str(tmp_path / "log"),
    }
    (tmp_path / "orm_handlers.py").write_text(
        textwrap.dedent("""
        import os
        import uwsgi
        from django.db import connection

        def spooler(env):
            with connection.cursor() as cursor:
                cursor.execute("SELECT 40 + 2")
                answer = cursor.fetchone()[0]
            with open(os.environ["SPOOL_LOG"], "a") as log:
                log.write(repr(("orm", answer)) + "\\n")
            return uwsgi.SPOOL_OK
    """)
    )
    (tmp_path / "mixed.py").write_text(
        textwrap.dedent("""
        from broker.uwsgidecorators import spool
        from django_jobs.schedules import timer

        @spool
        def mail(env): ...

        @timer(seconds=30)
        def refresh(): ...
    """)
    )
    with run_broker("--uwsgi-socket", "127.0.0.1:0") as broker:
        send_spool(broker.uwsgi[0], {b"k": b"v"})
        served, refused = (
            subprocess.run(
                [*SPOOLGEAR, "spooler", "--import", module, "-s", broker.address, "--burst"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            for module in ("orm_handlers", "mixed")
        )
    assert served.returncode == 0, served.stderr
    assert (tmp_path / "log").read_text() == "('orm', 42)\n"
    assert refused.returncode != 0
    assert "mixed.refresh is not a spool handler: it is a django_jobs task" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_module_without_handlers_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty.py").write_text("x = 1\n")
    result = subprocess.run(
        [*SPOOLGEAR, "spooler", "--import", "empty"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 1
    assert "define no spool handler" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_spooler_serves_a_tls_broker(tmp_path: Path, handlers: ModuleType) -> None:
    pki = PKI(tmp_path / "pki")
    files = pki.client("spooler.example")
    with run_broker(*pki.server_args(), "--plain-listen", "127.0.0.1:0") as broker:
        spool_file = encode_spool([(b"ud_spool_func", b"mail"), (b"to", b"tls@example.org")])
        with Client([broker.address]) as client:
            client.submit_background("mail", spool_file)
        tls = ["--ssl", "--ssl-ca-file", files.ca_file, "--ssl-certificate", files.certificate]
        notes = run_spooler(tmp_path, f"127.0.0.1:{broker.tls_port}", *tls, "--ssl-key", files.key)
    assert notes == [("mail", [("to", "tls@example.org"), ("ud_spool_func", "mail")])]
