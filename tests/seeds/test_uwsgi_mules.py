"""uWSGI Mules docs (seeds/000): every example, on a real broker and real workers.

``uwsgi --mule=feed.py --mule=feed.py --mule=wallow.py --farm=busy:1,2 --farm=idle:3``
becomes three ``manage.py gearman_worker --mule N --farm NAME`` processes (supervisord
programs in production) running the handlers of seeds/gearman_workers/mules.py.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from broker import uwsgi_api, uwsgidecorators
from django_jobs.mules import NoConsumer, farm_msg, mule_msg
from tests.helpers import ROOT, SPOOLGEAR, RunningBroker, run_broker, wait_until
from tests.seeds.conftest import read_notes
from tests.with_django.project import gearman_worker


@pytest.fixture
def farm_broker() -> Iterator[RunningBroker]:
    """No grace: a farm or mule nobody serves is refused at once, as uWSGI does."""
    with (
        run_broker("--transient-grace", "0") as broker,
        override_settings(GEARMAN_CLIENT_SERVERS=[broker.address]),
    ):
        yield broker


def test_programmed_mules_and_farms(farm_broker: RunningBroker, tmp_path: Path) -> None:
    log = tmp_path / "seeds.log"
    address = farm_broker.address
    with (
        gearman_worker(address, "--mule", "1", "--farm", "busy", SEEDS_LOG=str(log)) as one,
        gearman_worker(address, "--mule", "2", "--farm", "busy", SEEDS_LOG=str(log)) as two,
        gearman_worker(address, "--mule", "3", "--farm", "idle", SEEDS_LOG=str(log)),
    ):
        # Send the string "ciuchino" to mule1.
        mule_msg("ciuchino", 1)
        # Send the string "eat stuff" to farm "busy"
        farm_msg("busy", "eat stuff")
        farm_msg("idle", "wallow")
        wait_until(lambda: len(read_notes(log)) == 3)
    notes = {note[1]: note for note in read_notes(log)}
    assert notes["loop1"] == [one.pid, "loop1", "ciuchino", 1]  # uwsgi.mule_id() is 1
    assert notes["feed"][0] in (one.pid, two.pid) and notes["feed"][2] == "eat stuff"
    assert notes["wallow"][2:] == ["wallow", 3]


def test_a_message_nobody_can_take_is_refused_at_once(farm_broker: RunningBroker) -> None:
    with pytest.raises(NoConsumer, match=r"spoolgear\.farm\.nobody refused the job: no"):
        farm_msg("nobody", "hello")
    with pytest.raises(NoConsumer, match=r"spoolgear\.mule\.9"):
        mule_msg("hello", 9)


def test_mule_get_msg_loops_are_not_provided_and_say_what_to_do() -> None:
    """somaro.py's ``uwsgi.mule_get_msg()``: its loop body becomes a @mulemsg handler."""
    with pytest.raises(NotImplementedError, match=r"@mulemsg\(\) or @farm\(NAME\)"):
        uwsgi_api.mule_get_msg()
    for feature in (uwsgidecorators.signal, uwsgidecorators.filemon):
        with pytest.raises(NotImplementedError, match=re.escape("docs/moving-over.md")):
            feature(17, target="mule2")


def test_a_timer_targeting_a_mule_runs_in_a_spooler_with_mule_id(tmp_path: Path) -> None:
    """``@timer(30, target='mule')`` with ``uwsgi.mule_id()``, under ``spoolgear spooler``
    (1 s instead of 30; ``signal`` and ``filemon`` left out: not provided)."""
    (tmp_path / "hello.py").write_text(
        textwrap.dedent("""
        import os
        import uwsgi
        from uwsgidecorators import timer

        # run a timer in the first available mule
        @timer(1, target='mule')
        def hello(signum):
            with open(os.environ["SEEDS_LOG"], "a") as log:
                log.write("[0, %d, %d]\\n" % (signum, uwsgi.mule_id()))
    """)
    )
    log = tmp_path / "seeds.log"
    with run_broker() as broker:
        spooler = subprocess.Popen(
            [*SPOOLGEAR, "spooler", "--import", "hello", "-s", broker.address],
            cwd=tmp_path,
            env={"PYTHONPATH": str(ROOT), "SEEDS_LOG": str(log)},
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until(lambda: len(read_notes(log)) >= 2, timeout=20)
        finally:
            spooler.terminate()
            _, errors = spooler.communicate(timeout=20)
    assert read_notes(log)[:2] == [[0, 0, 0], [0, 0, 0]]  # signal 0, not a mule
    assert "schedule of spoolgear.timer.hello.hello registered" in errors
