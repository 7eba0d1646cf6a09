"""``manage.py gearman_supervisor_config`` on the test project: what it writes and refuses."""

from __future__ import annotations

import configparser
import sys

import pytest

from tests.with_django.project import PROJECT, manage


def test_one_program_per_worker_and_queue_grouped_per_app() -> None:
    done = manage(
        "127.0.0.1:4730",
        "gearman_supervisor_config",
        "--numprocs",
        "3",
        "--pool",
        "shop.mail.outbox=1",
        "--pool",
        "shop.clock=0",
        "--user",
        "www-data",
        "--env",
        "SENTRY_DSN=https://x%y",
        "--log-dir",
        "/var/log/shop",
    )
    assert done.returncode == 0, done.stderr
    config = configparser.RawConfigParser()
    config.read_string(done.stdout)
    programs = {
        name.removeprefix("program:"): dict(config[name])
        for name in config.sections()
        if name.startswith("program:")
    }
    assert "shop-clock-default" not in programs
    outbox, mail = programs["shop-mail-outbox"], programs["shop-mail-default"]
    assert outbox["command"] == (
        f"{sys.executable} {PROJECT}/manage.py gearman_worker -a shop -n mail -q outbox"
    )
    assert ("numprocs" not in outbox, mail["numprocs"]) == (True, "3")
    assert mail["stdout_logfile"] == "/var/log/shop/%(program_name)s_%(process_num)02d.log"
    assert (mail["stopsignal"], mail["user"], mail["autorestart"]) == ("TERM", "www-data", "true")
    assert mail["environment"] == (
        'PYTHONUNBUFFERED="1",DJANGO_SETTINGS_MODULE="testsite.settings",SENTRY_DSN="https://x%%y"'
    )
    assert config["group:legacy"]["programs"] == (
        "legacy-gearman_jobs-default,legacy-gearman_jobs-math"
    )
    assert "shop-mail-outbox" in config["group:shop"]["programs"].split(",")


def test_a_pool_per_tasks_framework_queue_in_the_tasks_group() -> None:
    done = manage(
        "127.0.0.1:4730",
        "gearman_supervisor_config",
        "-a",
        "legacy",
        "--tasks-queue",
        "default=3",
        "--tasks-queue",
        "reports",
    )
    assert done.returncode == 0, done.stderr
    config = configparser.RawConfigParser()
    config.read_string(done.stdout)
    default = config["program:tasks-queue-default"]
    assert default["command"] == (
        f"{sys.executable} {PROJECT}/manage.py gearman_worker --tasks-queue default"
    )
    assert default["numprocs"] == "3" and config["program:tasks-queue-reports"]["numprocs"] == "2"
    assert config["group:tasks"]["programs"] == "tasks-queue-default,tasks-queue-reports"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pool", "shop.nope=2"], "--pool: no worker or queue shop.nope"),
        (["--pool", "shop.mail=two"], "--pool shop.mail=two: N must be a whole number"),
        (["--tasks-queue", "default=x"], "--tasks-queue default=x: N must be a whole number"),
        (["--numprocs", "0"], "--numprocs and --stopwaitsecs must be positive"),
        (["--virtualenv", "/nonexistent"], "--virtualenv /nonexistent: no bin/python there"),
        (["--project-dir", "/tmp"], "no manage.py in /tmp; pass --project-dir"),
        (["-a", "nope"], "no worker modules found in nope"),
    ],
)
def test_bad_options_are_clear_errors(args: list[str], message: str) -> None:
    done = manage("127.0.0.1:4730", "gearman_supervisor_config", *args)
    assert done.returncode != 0
    assert message in done.stderr
