"""The article on the uWSGI spooler (seeds/003): every example, under ``spoolgear spooler``.

Its worker file runs unchanged (``from uwsgidecorators import spool, uwsgi``). The web
side imports the same decorators as ``broker.uwsgidecorators``, which works in both
processes. ``uwsgi.send_message`` is gone from uWSGI since 1.9 (reference
uwsgi-spooler.md 1.5); ``broker.uwsgi_client.send_spool`` is its replacement.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from broker import uwsgi_api, uwsgidecorators
from broker.uwsgi_client import send_spool
from tests.helpers import ROOT, SPOOLGEAR, RunningBroker, run_broker, wait_until
from tests.seeds.conftest import read_notes

WORKER_FILE = """
    import json, os
    from uwsgidecorators import spool, spoolforever, timer, uwsgi  # the article: spool, uwsgi

    def note(*record):
        with open(os.environ["SEEDS_LOG"], "a") as log:
            log.write(json.dumps(record) + "\\n")

    @spool
    def my_func(args):
        note("my_func", args)
        # do some job

    @spoolforever
    def my_forever_func(args):
        note("forever", args["n"])
        # do some job and repeat

    @timer(1)
    def my_timer_func(args):
        note("timer", args)
        # do some job every 30 (here 1) sec

    def spooler(env):
        note("networked", {k.decode(): v.decode() for k, v in env.items()
                           if k != "spooler_task_name"})
        return uwsgi.SPOOL_OK
"""


@pytest.fixture
def mysite_spool(tmp_path: Path) -> Iterator[ModuleType]:
    """``uwsgi_spools/mysite_spool.py``, imported here as a web process would."""
    package = tmp_path / "uwsgi_spools"
    package.mkdir()
    (package / "__init__.py").write_text("")
    source = textwrap.dedent(WORKER_FILE)
    (package / "mysite_spool.py").write_text(source)
    web_side = source.replace("from uwsgidecorators", "from broker.uwsgidecorators")
    (tmp_path / "web_mysite_spool.py").write_text(web_side)
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("web_mysite_spool")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("web_mysite_spool", None)
        for name in ("my_func", "my_forever_func"):
            uwsgidecorators.spool_functions.pop(name, None)
        uwsgidecorators.schedules.pop("spoolgear.timer.web_mysite_spool.my_timer_func", None)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RunningBroker]:
    with run_broker("--uwsgi-socket", "127.0.0.1:0") as running:
        uwsgi_api.configure([running.address])
        yield running


def test_the_worker_file_runs_unchanged(
    broker: RunningBroker, mysite_spool: ModuleType, tmp_path: Path
) -> None:
    mysite_spool.my_func.spool(test=True)  # "Statement of the problem from your code"
    mysite_spool.my_forever_func.spool(n=1)
    uwsgi_api.spool(test=True, spooler=broker.uwsgi[0])  # a networked spooler's address
    log = tmp_path / "log"
    spooler = subprocess.Popen(
        [
            *SPOOLGEAR,
            "spooler",
            "--import",
            "uwsgi_spools.mysite_spool",
            "-s",
            broker.address,
            "--forever-interval",
            "0.1",
        ],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": str(ROOT), "SEEDS_LOG": str(log)},
    )
    try:
        wait_until(
            lambda: (
                [note[0] for note in read_notes(log)].count("forever") >= 2
                and "timer" in [note[0] for note in read_notes(log)]
            ),
            timeout=20,
        )
    finally:
        spooler.terminate()
        _, errors = spooler.communicate(timeout=20)
    notes = read_notes(log)
    (my_func,) = [note[1] for note in notes if note[0] == "my_func"]
    assert my_func["test"] == "True"  # uWSGI cast non-strings with str()
    # "a dictionary with three service keys"
    assert my_func["ud_spool_func"] == "my_func" and my_func["ud_spool_ret"] == "-2"
    assert my_func["spooler_task_name"].startswith("H:")
    (networked,) = [note[1] for note in notes if note[0] == "networked"]
    assert networked == {"test": "True"}
    assert next(note[1] for note in notes if note[0] == "timer") == 0  # its signal number
    assert spooler.returncode == 0, errors


def test_an_address_as_spooler_name_is_refused_by_the_broker(broker: RunningBroker) -> None:
    """A spool packet naming an address as its spooler can never be served: refused."""
    with pytest.raises(Exception, match="REFUSED"):
        send_spool(broker.uwsgi[0], {b"test": b"True", b"spooler": b"127.0.0.1:10001"})
