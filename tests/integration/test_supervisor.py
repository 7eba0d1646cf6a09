"""Worker pools of the example project under a real supervisord, from the generated config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from broker.admin import AdminClient
from broker.client import Client
from django_jobs.sending.serialization import dumps_call, loads_result
from examples.supervised import BIN, Supervisord
from tests.helpers import ROOT, RunningBroker, require_peer, wait_until

PROJECT = ROOT / "examples" / "project"
TRANSCODE = "store.video.transcode"
MAIL = "store.mail.send_welcome_mail"


def generate_config(address: str, run_dir: Path, *options: str) -> Path:
    programs = run_dir / "programs.conf"
    env = {
        **os.environ,
        "GEARMAN_SERVERS": address,
        "EXAMPLE_RUN_DIR": str(run_dir),
        "DJANGO_SETTINGS_MODULE": "exampleshop.settings",
    }
    done = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "gearman_supervisor_config",
            "--log-dir",
            str(run_dir),
            "--env",
            f"GEARMAN_SERVERS={address}",
            "--env",
            f"EXAMPLE_RUN_DIR={run_dir}",
            "--stopwaitsecs",
            "60",
            "--pool",
            "store.reports=0",
            *options,
            "-o",
            str(programs),
        ],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return programs


def serving(address: str, function: str) -> list[str]:
    """Client ids of the workers registered for ``function``."""
    with AdminClient(address) as admin:
        return [w.client_id for w in admin.workers() if function in w.functions]


@pytest.fixture
def pools(broker: RunningBroker, tmp_path: Path) -> Iterator[Supervisord]:
    """mail x3 and video x2 under supervisord, registered with the broker."""
    require_peer(str(BIN / "supervisord"))
    programs = generate_config(
        broker.address, tmp_path, "--pool", "store.mail=3", "--pool", "store.video=2"
    )
    with Supervisord(tmp_path, programs) as supervisord:
        wait_until(
            lambda: (
                len(serving(broker.address, MAIL)) == 3
                and len(serving(broker.address, TRANSCODE)) == 2
                and len(supervisord.pids()) == 5
            ),
            timeout=30,
        )
        yield supervisord


def transcode(address: str, name: str, seconds: float) -> str:
    """A foreground transcode of ``seconds`` (ten steps); returns its result."""
    with Client([address], timeout=60) as client:
        payload = dumps_call([name], {"steps": 10, "step_seconds": seconds / 10})
        result: str = loads_result(client.submit(TRANSCODE, payload).data)
        return result


def test_the_config_runs_each_pool_with_its_numprocs(
    broker: RunningBroker, pools: Supervisord
) -> None:
    assert sorted(pools.pids()) == [
        "store:store-mail-mail_00",
        "store:store-mail-mail_01",
        "store:store-mail-mail_02",
        "store:store-video-video_00",
        "store:store-video-video_01",
    ]
    assert all(":store.mail" in client for client in serving(broker.address, MAIL))
    config = (Path(pools.config).parent / "programs.conf").read_text()
    assert "stopsignal=TERM" in config and 'PYTHONUNBUFFERED="1"' in config
    assert (
        f"command={sys.executable} {PROJECT}/manage.py gearman_worker -a store -n mail "
        "-q mail" in config
    )


def test_a_worker_killed_mid_job_comes_back_and_no_job_is_lost(
    broker: RunningBroker, pools: Supervisord
) -> None:
    before = pools.pids("store:store-video-")
    with ThreadPoolExecutor(3) as running:
        results = [running.submit(transcode, broker.address, f"clip{n}.mov", 2.0) for n in range(3)]
        with AdminClient(broker.address) as admin:
            wait_until(lambda: any(s.running == 2 for s in admin.status() if s.name == TRANSCODE))
        victim = "store:store-video-video_00"
        os.kill(before[victim], signal.SIGKILL)
        wait_until(
            lambda: pools.pids(victim).get(victim, before[victim]) != before[victim], timeout=30
        )
        assert sorted(result.result(timeout=60) for result in results) == [
            "clip0.webm",
            "clip1.webm",
            "clip2.webm",
        ]
    wait_until(lambda: len(serving(broker.address, TRANSCODE)) == 2, timeout=30)


def test_stopping_a_pool_mid_job_lets_the_job_finish_and_report(
    broker: RunningBroker, pools: Supervisord
) -> None:
    with ThreadPoolExecutor(1) as running:
        result = running.submit(transcode, broker.address, "long.mov", 3.0)
        with AdminClient(broker.address) as admin:
            wait_until(lambda: any(s.running == 1 for s in admin.status() if s.name == TRANSCODE))
        stopped = pools.ctl("stop", "store:store-video-video_00", "store:store-video-video_01")
        assert result.result(timeout=60) == "long.webm"
    assert stopped.stdout.count(": stopped") == 2, stopped.stdout
    assert pools.pids("store:store-video-") == {}
    log = "".join(path.read_text() for path in Path(pools.config).parent.glob("store-video-*"))
    assert "stopping (signal) after 1 jobs" in log


def test_restarting_the_group_with_queued_jobs_completes_them_all(
    broker: RunningBroker, pools: Supervisord, tmp_path: Path
) -> None:
    with Client([broker.address]) as client:
        for n in range(5):
            client.submit_background(MAIL, dumps_call([f"user{n}@example.com", f"User {n}"], {}))
    with ThreadPoolExecutor(8) as running:
        results = [
            running.submit(transcode, broker.address, f"batch{n}.mov", 0.5) for n in range(8)
        ]
        restarted = pools.ctl("restart", "store:*")
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        assert sorted(result.result(timeout=90) for result in results) == sorted(
            f"batch{n}.webm" for n in range(8)
        )
    mail = tmp_path / "mail"
    # Django's file backend appends mails sent within one second by one process to one file.
    wait_until(
        lambda: (
            mail.exists()
            and sum(path.read_text().count("Subject: Welcome") for path in mail.iterdir()) == 5
        ),
        timeout=30,
    )
