"""``gearman_server_info`` against spoolgear, Debian's gearmand and a server that is down."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from django_jobs.client import GearmanClient, Job
from tests.helpers import RunningBroker, free_port
from tests.with_django.project import PROJECT, gearman_worker, manage, manage_env, parse_tables

SERVER, TASKS, WORKERS = 0, 1, 2


def queue_three_slow_jobs(address: str) -> None:
    with GearmanClient([address]) as client:
        client.submit_jobs(
            [Job("shop.mail.slow", [0, "/dev/null"]) for _ in range(3)], background=True
        )


def test_tables_show_version_ping_tasks_and_workers(broker: RunningBroker) -> None:
    queue_three_slow_jobs(broker.address)
    with gearman_worker(broker.address, "-a", "shop", "-n", "images") as images:
        shown = manage(broker.address, "gearman_server_info")
    assert shown.returncode == 0, shown.stderr
    tables = parse_tables(shown.stdout)
    (server,) = tables[SERVER]
    assert server["Gearman Server Host"] == broker.address
    assert server["Gearman Server Version"].startswith("1.1.20")
    assert server["Ping Response Time"].endswith(" ms")
    tasks = {row["Task Name"]: row for row in tables[TASKS]}
    assert tasks["shop.mail.slow"] == {
        "Task Name": "shop.mail.slow",
        "Total Workers": "0",
        "Running Jobs": "0",
        "Queued Jobs": "3",
    }
    assert tasks["shop.images.resize"]["Total Workers"] == "1"
    assert "\n! shop.mail.slow: 3 queued, no worker registered\n" in shown.stdout
    (worker,) = tables[WORKERS]
    assert worker["Registered Tasks"] == "shop.images.resize,shop.images.thumbnail"
    assert worker["Client ID"].endswith(f":{images.pid}:shop.images")
    assert worker["Worker IP"] == "127.0.0.1" and worker["File Descriptor"].isdigit()


def test_the_filter_narrows_both_tables_and_json_has_the_same(broker: RunningBroker) -> None:
    queue_three_slow_jobs(broker.address)
    with (
        gearman_worker(broker.address, "-a", "shop", "-n", "images"),
        gearman_worker(broker.address, "-a", "shop", "-n", "mail", "-q", "outbox"),
    ):
        shown = manage(broker.address, "gearman_server_info", "thumb")
        as_json = manage(broker.address, "gearman_server_info", "thumb", "--json")
    tables = parse_tables(shown.stdout)
    assert [row["Task Name"] for row in tables[TASKS]] == ["shop.images.thumbnail"]
    assert [row["Registered Tasks"] for row in tables[WORKERS]] == [
        "shop.images.resize,shop.images.thumbnail"
    ]
    (report,) = json.loads(as_json.stdout)
    assert [task["name"] for task in report["tasks"]] == ["shop.images.thumbnail"]
    assert report["error"] == "" and report["ping"] > 0


def test_a_server_that_is_down_is_one_row_and_the_others_still_show(broker: RunningBroker) -> None:
    down = f"127.0.0.1:{free_port()}"
    shown = manage(f"{down},{broker.address}", "gearman_server_info")
    assert shown.returncode == 0, shown.stderr
    tables = parse_tables(shown.stdout)
    (row,) = tables[0]
    assert row["Gearman Server Host"] == down
    assert row["Gearman Server Version"].startswith(f"unreachable: cannot connect to {down}")
    assert tables[1][0]["Gearman Server Host"] == broker.address
    assert "Traceback" not in shown.stderr


def test_watch_redraws_until_interrupted(broker: RunningBroker) -> None:
    process = subprocess.Popen(
        [sys.executable, "manage.py", "gearman_server_info", "--watch", "0.1"],
        cwd=PROJECT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=manage_env(broker.address),
    )
    assert process.stdout is not None
    frames = 0
    while frames < 2:
        line = process.stdout.readline()
        frames += line.count("\x1b[H\x1b[2J")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr


def test_watch_and_timeout_must_be_positive() -> None:
    for option in ("--watch", "--timeout"):
        shown = manage("127.0.0.1:1", "gearman_server_info", option, "0")
        assert shown.returncode != 0
        assert f"{option} must be a positive number of seconds" in shown.stderr
