"""The uWSGI Spooler docs (seeds/001): every example, under ``spoolgear spooler``.

The Perl ``Net::uwsgi`` sender and ``--spooler-external`` directories run against real
peers in tests/interop/test_uwsgi.py. Python 3 handlers get bytes keys and values, as
they do under uWSGI's Python 3 plugin (the docs' ``env['foobar']`` is Python 2).
"""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker import uwsgi_api as uwsgi  # a web process's ``import uwsgi``
from broker.admin import AdminClient
from tests.helpers import ROOT, SPOOLGEAR, RunningBroker, run_broker, wait_until
from tests.seeds.conftest import read_notes

MY_SPOOLER = """
    import json, os
    import uwsgi

    def my_spooler(env):
        with open(os.environ["SEEDS_LOG"], "a") as log:
            log.write(json.dumps([os.getpid(), os.getcwd(), env[b'foobar'].decode()]) + "\\n")
        if env.get(b'sleep'):
            import time; time.sleep(float(env[b'sleep']))
        return uwsgi.SPOOL_OK

    uwsgi.spooler = my_spooler
"""

AGAIN = """
    import uwsgi

    def call_me_again_and_again(env):
        return uwsgi.SPOOL_RETRY

    uwsgi.spooler = call_me_again_and_again
"""


@pytest.fixture
def spool_broker(tmp_path: Path) -> Iterator[RunningBroker]:
    (tmp_path / "my_spooler.py").write_text(textwrap.dedent(MY_SPOOLER))
    (tmp_path / "again.py").write_text(textwrap.dedent(AGAIN))
    with run_broker() as broker:
        uwsgi.configure([broker.address])
        yield broker


def spooler(tmp_path: Path, address: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*SPOOLGEAR, "spooler", "-s", address, *args],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": str(ROOT), "SEEDS_LOG": str(tmp_path / "log")},
    )


def finish(process: subprocess.Popen[str], *, stop: bool = False) -> str:
    """Its log, once it exited (a ``--burst`` one by itself, else stopped by SIGTERM)."""
    if stop:
        process.terminate()
    _, errors = process.communicate(timeout=30)
    return errors


def test_a_spooler_function_assigned_to_uwsgi_spooler_gets_every_spooled_dict(
    spool_broker: RunningBroker, tmp_path: Path
) -> None:
    uwsgi.spool({"foo": "bar", "name": "Kratos", "surname": "the same of Zeus", "foobar": "dict"})
    uwsgi.spool(foo="bar", name="Kratos", surname="the same of Zeus", foobar="keywords")
    errors = finish(spooler(tmp_path, spool_broker.address, "--import", "my_spooler", "--burst"))
    assert sorted(note[2] for note in read_notes(tmp_path / "log")) == ["dict", "keywords"], errors


def test_spool_retry_is_retried_a_bounded_number_of_times(
    spool_broker: RunningBroker, tmp_path: Path
) -> None:
    """ "You can re-enqueue a spooler request by returning uwsgi.SPOOL_RETRY": under uWSGI
    forever; here ``--attempts`` times, then the failed list."""
    uwsgi.spool(foobar="again")
    finish(
        spooler(
            tmp_path,
            spool_broker.address,
            "--import",
            "again",
            "--attempts",
            "3",
            "--retry-delay",
            "0",
            "--burst",
        )
    )
    with AdminClient(spool_broker.address) as admin:
        (failed,) = admin.show_failed()
    assert "gave up after 3 attempts: handler returned -1" in failed.error


def test_a_second_uwsgi_spooler_assignment_is_refused(
    spool_broker: RunningBroker, tmp_path: Path
) -> None:
    errors = finish(
        spooler(
            tmp_path, spool_broker.address, "--import", "my_spooler", "--import", "again", "--burst"
        )
    )
    assert "two uwsgi.spooler handlers are named 'uwsgi.spooler'" in errors
    assert "under uWSGI the last one silently wins" in errors


def test_spooler_processes_max_tasks_and_chdir(spool_broker: RunningBroker, tmp_path: Path) -> None:
    """``spooler-processes``, ``spooler-max-tasks`` and ``spooler-chdir``, by uWSGI's names."""
    work = tmp_path / "work"
    work.mkdir()
    process = spooler(
        tmp_path,
        spool_broker.address,
        "--import",
        "my_spooler",
        "--spooler-processes",
        "2",
        "--spooler-max-tasks",
        "1",
        "--spooler-chdir",
        str(work),
    )
    try:
        with AdminClient(spool_broker.address) as admin:
            wait_until(lambda: len([w for w in admin.workers() if w.functions]) == 2)
        for number in range(4):
            uwsgi.spool(foobar=str(number))
        wait_until(lambda: len(read_notes(tmp_path / "log")) == 4, timeout=30)
    finally:
        errors = finish(process, stop=True)
    notes = read_notes(tmp_path / "log")
    assert len({note[0] for note in notes}) == 4, "each process is replaced after one task"
    assert {note[1] for note in notes} == {str(work)}
    assert process.returncode == 0, errors


def test_spooler_harakiri_cuts_off_a_stuck_task(
    spool_broker: RunningBroker, tmp_path: Path
) -> None:
    process = spooler(
        tmp_path,
        spool_broker.address,
        "--import",
        "my_spooler",
        "--spooler-harakiri",
        "1",
        "--attempts",
        "1",
    )
    try:
        uwsgi.spool(foobar="stuck", sleep="60")
        with AdminClient(spool_broker.address) as admin:
            wait_until(lambda: bool(admin.show_failed()), timeout=20)
            (failed,) = admin.show_failed()
            wait_until(lambda: len([w for w in admin.workers() if w.functions]) == 1)
    finally:
        errors = finish(process, stop=True)
    assert "harakiri: the job ran longer than its time limit of 1 s" in failed.error
    assert "exited" in errors, "the process that ran it was replaced"
    assert [note[2] for note in read_notes(tmp_path / "log")] == ["stuck"]
