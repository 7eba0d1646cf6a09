"""The same worker, client and server-info commands against Debian's gearmand 1.1.20."""

from __future__ import annotations

from pathlib import Path

import pytest

from django_jobs.client import GearmanClient, Job, TaskError
from tests.helpers import run_gearmand
from tests.with_django.project import gearman_worker, manage, parse_tables, wait_for_file

pytestmark = pytest.mark.peer("gearmand")


def test_worker_client_and_server_info_work_on_gearmand(tmp_path: Path) -> None:
    with run_gearmand() as port:
        address = f"127.0.0.1:{port}"
        with (
            gearman_worker(address, "-a", "shop", "-n", "mail") as worker,
            GearmanClient([address], timeout=30) as client,
        ):
            assert client.submit_job("shop.mail.echo", b"\x00", n=1) == {
                "args": [b"\x00"],
                "kwargs": {"n": 1},
            }
            with pytest.raises(TaskError, match="ValueError: on gearmand"):
                client.submit_job("shop.mail.explode", "on gearmand")
            started = tmp_path / "started"
            client.submit_jobs(
                [Job("shop.mail.slow", [30, str(started)])]
                + [Job("shop.mail.slow", [0, "/dev/null"])] * 2,
                background=True,
            )
            wait_for_file(started)
            shown = manage(address, "gearman_server_info", "slow")
            assert shown.returncode == 0, shown.stderr
            server, tasks, workers = parse_tables(shown.stdout)
            assert server[0]["Gearman Server Version"].startswith("1.1.20")
            assert tasks == [
                {
                    "Task Name": "shop.mail.slow",
                    "Total Workers": "1",
                    "Running Jobs": "1",
                    "Queued Jobs": "2",
                }
            ]
            assert workers[0]["Client ID"].endswith(f":{worker.pid}:shop.mail")
