"""Worker modules are found per app, named by the jbox rule, and import errors surface."""

from __future__ import annotations

import json

import pytest

from django_jobs.jobs.registry import default_name, find_task, gearman_task
from tests.with_django.project import manage

EXPECTED_TASKS = [
    ("legacy", "gearman_jobs", "default", "legacy.negate"),
    ("legacy", "gearman_jobs", "math", "legacy.add"),
    ("shop", "clock", "default", "shop.clock.every_five_minutes_of_even_hours"),
    ("shop", "clock", "default", "shop.clock.heartbeat"),
    ("shop", "clock", "default", "shop.clock.twice"),
    ("shop", "farm", "default", "shop.farm.make_thumbnail"),
    ("shop", "feeds", "default", "shop.feeds.add_after_a_failure"),
    ("shop", "feeds", "default", "shop.feeds.broken_feed"),
    ("shop", "feeds", "default", "shop.feeds.countdown"),
    ("shop", "feeds", "default", "shop.feeds.double"),
    ("shop", "feeds", "default", "shop.feeds.flaky"),
    ("shop", "images", "images", "shop.images.resize"),
    ("shop", "images", "thumbs", "shop.images.thumbnail"),
    ("shop", "mail", "default", "shop.mail.database"),
    ("shop", "mail", "default", "shop.mail.echo"),
    ("shop", "mail", "default", "shop.mail.explode"),
    ("shop", "mail", "default", "shop.mail.progress"),
    ("shop", "mail", "default", "shop.mail.slow"),
    ("shop", "mail", "outbox", "mail.send"),
    ("shop", "tasks", "default", "shop.tasks.ping"),
]


def test_list_tasks_shows_every_worker_queue_and_name() -> None:
    listed = manage("127.0.0.1:1", "gearman_list_tasks", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {
        (r["app"], r["worker"], r["queue"], r["task"])
        for r in json.loads(listed.stdout)
        if r["app"] != "seeds"
    }  # the seed documents' examples: tests/seeds/
    assert rows == set(EXPECTED_TASKS)


def test_list_tasks_applies_the_wire_name_settings() -> None:
    listed = manage(
        "127.0.0.1:1", "gearman_list_tasks", "--json", "--settings", "testsite.settings_namespaced"
    )
    assert listed.returncode == 0, listed.stderr
    functions = {r["task"]: r["function"] for r in json.loads(listed.stdout)}
    assert functions["shop.mail.echo"] == "v2.shop.mail.echo@staging"


def test_default_name_drops_the_workers_package_like_jbox() -> None:
    def send() -> None: ...

    send.__module__ = "shop.gearman_workers.mail"
    assert default_name(send) == "shop.mail.send"
    send.__module__ = "legacy.gearman_jobs"
    assert default_name(send) == "legacy.send"


def test_the_decorator_returns_the_function_itself() -> None:
    task = find_task("shop.mail.echo")
    assert task is not None
    assert task.function(1, a=2) == {"args": (1,), "kwargs": {"a": 2}}


def test_two_tasks_with_one_name_are_refused() -> None:
    from django.core.exceptions import ImproperlyConfigured

    def echo() -> None: ...

    echo.__module__ = "elsewhere.gearman_workers.other"
    with pytest.raises(ImproperlyConfigured, match=r"two tasks are named 'shop\.mail\.echo'"):
        gearman_task(name="shop.mail.echo")(echo)


def test_an_import_error_in_a_worker_module_is_reported_with_its_traceback() -> None:
    listed = manage("127.0.0.1:1", "gearman_list_tasks", "--settings", "testsite.settings_broken")
    assert listed.returncode != 0
    assert "cannot import worker module broken.gearman_workers.oops" in listed.stderr
    assert "No module named 'spoolgear_no_such_module'" in listed.stderr
    assert 'broken/gearman_workers/oops.py", line 1' in listed.stderr
