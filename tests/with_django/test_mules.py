"""Mules and farms: transient messages delivered once, whole, with backpressure."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from broker.admin import AdminClient
from django_jobs.mules import QueueFull, farm_msg, mule_msg
from tests.helpers import RunningBroker, run_broker, wait_until
from tests.with_django.project import gearman_worker


def notes(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def sending_to(broker: RunningBroker) -> Iterator[None]:
    with override_settings(GEARMAN_CLIENT_SERVERS=[broker.address]):
        yield


@pytest.mark.usefixtures("sending_to")
def test_farm_messages_reach_exactly_one_member_whole(
    broker: RunningBroker, tmp_path: Path
) -> None:
    ticks = tmp_path / "ticks"
    with (
        gearman_worker(broker.address, "--farm", "thumbs", TICKS_FILE=str(ticks)) as first,
        gearman_worker(broker.address, "--farm", "thumbs", TICKS_FILE=str(ticks)) as second,
    ):
        for number in range(20):
            farm_msg("thumbs", {"number": number})
        farm_msg("thumbs", "x" * 200_000)  # uWSGI's readers cut this to 65,536 bytes
        wait_until(lambda: len(notes(ticks)) == 21)
    seen = notes(ticks)
    # Two members work side by side: the long message need not be the last one noted.
    numbers = sorted(n["message"]["number"] for n in seen if "number" in n["message"])
    assert numbers == list(range(20))
    assert {"handler": "farm thumbs", "message": {"length": 200_000}} in [
        {key: n[key] for key in ("handler", "message")} for n in seen
    ]
    assert {n["pid"] for n in seen} <= {first.pid, second.pid}


@pytest.mark.usefixtures("sending_to")
def test_mule_messages_go_to_the_mule_asked_for_or_any_mule(
    broker: RunningBroker, tmp_path: Path
) -> None:
    ticks = tmp_path / "ticks"
    with (
        gearman_worker(broker.address, "--mule", "1", TICKS_FILE=str(ticks)) as one,
        gearman_worker(broker.address, "--mule", "2", TICKS_FILE=str(ticks)) as two,
    ):
        for number in range(5):
            mule_msg(f"for two {number}", mule_id=2)
        mule_msg("for anyone")
        wait_until(lambda: len(notes(ticks)) == 6)
    seen = notes(ticks)
    assert {n["pid"] for n in seen if n["message"].startswith("for two")} == {two.pid}
    assert [n["pid"] in (one.pid, two.pid) for n in seen if n["message"] == "for anyone"] == [True]


@pytest.mark.usefixtures("sending_to")
def test_a_mulefunc_runs_on_a_farm_member_joined_beside_a_worker_module(
    broker: RunningBroker, tmp_path: Path
) -> None:
    from shop.gearman_workers.farm import make_thumbnail

    ticks = tmp_path / "ticks"
    with gearman_worker(
        broker.address, "-a", "shop", "-n", "mail", "--farm", "thumbs", TICKS_FILE=str(ticks)
    ) as member:
        call = make_thumbnail("a.jpg", size=128)
        wait_until(lambda: bool(notes(ticks)))
        with AdminClient(broker.address) as admin:
            functions = next(
                w.functions for w in admin.workers() if f":{member.pid}:" in w.client_id
            )
    assert call.handle is not None
    assert notes(ticks) == [
        {"pid": member.pid, "handler": "make_thumbnail", "message": ["a.jpg", 128]}
    ]
    assert "spoolgear.farm.thumbs" in functions and "shop.mail.echo" in functions


def test_a_full_farm_queue_raises_to_the_sender_and_nothing_is_stored(tmp_path: Path) -> None:
    with (
        run_broker(
            "--store",
            f"sqlite:{tmp_path / 'jobs.db'}",
            "--transient-max-queue",
            "3",
            "--transient-grace",
            "600",
        ) as broker,
        override_settings(GEARMAN_CLIENT_SERVERS=[broker.address]),
    ):
        for number in range(3):
            farm_msg("thumbs", number)
        with pytest.raises(
            QueueFull,
            match=r"spoolgear\.farm\.thumbs refused the job: its "
            "queue is full",
        ):
            farm_msg("thumbs", 3)
        with AdminClient(broker.address) as admin:
            assert [(s.name, s.total) for s in admin.status()] == [("spoolgear.farm.thumbs", 3)]

    with sqlite3.connect(tmp_path / "jobs.db") as db:
        assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


@pytest.mark.usefixtures("sending_to")
def test_a_message_without_a_handler_lands_in_the_failed_list(broker: RunningBroker) -> None:
    with gearman_worker(broker.address, "--farm", "orphans"):
        farm_msg("orphans", "hello")
        with AdminClient(broker.address) as admin:
            wait_until(lambda: bool(admin.show_failed()))
            (failed,) = admin.show_failed()
    assert failed.function == "spoolgear.farm.orphans"
    assert "has no handler: decorate one with @farm(NAME) or @mulemsg()" in failed.error
