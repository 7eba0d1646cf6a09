"""Results the broker keeps of background jobs: states, ends, limits, expiry, restarts."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from broker.protocol.packets import PacketType
from broker.store.sqlite import SQLiteStore
from tests.unit.harness import Harness, Peer, restart

T = PacketType


def result(peer: Peer, handle: bytes) -> dict[str, Any]:
    reply = peer.admin(b"show result " + handle)
    assert reply.endswith(b"\n.\n"), reply
    parsed: dict[str, Any] = json.loads(reply[: -len(b"\n.\n")])
    return parsed


def worker(harness: Harness, name: bytes, function: bytes = b"f") -> Peer:
    peer = harness.peer("10.0.0.9")
    peer.send(T.SET_CLIENT_ID, name)
    peer.send(T.CAN_DO, function)
    return peer


def test_a_job_is_queued_then_running_then_successful_with_its_value() -> None:
    harness = Harness(keep_results=60)
    client = harness.peer()
    handle = client.submit(b"f", b"payload")
    assert result(client, handle) | {"enqueued_at": None} == {
        "handle": handle.decode(),
        "function": "f",
        "status": "queued",
        "enqueued_at": None,
        "started_at": None,
        "last_started_at": None,
        "finished_at": None,
        "attempts": 0,
        "workers": [],
        "errors": [],
        "value": "",
        "value_size": 0,
        "data": base64.b64encode(b"payload").decode(),
        "data_size": 7,
    }
    assert result(client, handle)["enqueued_at"] == harness.now
    busy = worker(harness, b"worker-1")
    assert busy.grab() is not None
    harness.now += 2
    assert result(client, handle)["status"] == "running"
    harness.now += 3
    busy.send(T.WORK_COMPLETE, handle, b"the value")
    ended = result(client, handle)
    assert ended["status"] == "successful"
    assert (ended["started_at"], ended["finished_at"]) == (harness.now - 5, harness.now)
    assert ended["workers"] == ["worker-1"] and ended["attempts"] == 1
    assert base64.b64decode(ended["value"]) == b"the value"
    assert client.admin(b"show result H:test:999") == b"ERR UNKNOWN_JOB\r\n"


def test_each_failed_attempt_keeps_its_worker_and_reason() -> None:
    harness = Harness(keep_results=60, retry_failures={b"f": 3})
    client = harness.peer()
    handle = client.submit(b"f")
    for attempt, name in enumerate([b"a", b"b", b"c"], 1):
        peer = worker(harness, name)
        assert peer.grab() is not None
        peer.send(T.WORK_EXCEPTION, handle, b"boom %d" % attempt)
    ended = result(client, handle)
    assert ended["status"] == "failed"
    assert ended["workers"] == ["a", "b", "c"] and ended["attempts"] == 3
    assert [error.partition(";")[0] for error in ended["errors"]] == ["boom 1", "boom 2", "boom 3"]
    assert client.admin(b"show failed").startswith(handle)


def test_a_succeeding_retry_lists_the_failures_before_it() -> None:
    harness = Harness(keep_results=60, retry_failures={b"f": 3})
    client = harness.peer()
    handle = client.submit(b"f")
    first = worker(harness, b"a")
    assert first.grab() is not None
    first.send(T.WORK_FAIL, handle)
    second = harness.peer()  # no client id: named by its address
    second.send(T.CAN_DO, b"f")
    assert second.grab() is not None
    second.send(T.WORK_COMPLETE, handle, b"")
    ended = result(client, handle)
    assert (ended["status"], ended["workers"], ended["errors"]) == (
        "successful",
        ["a", "127.0.0.1"],
        ["WORK_FAIL"],
    )


def test_a_cancelled_job_says_so() -> None:
    harness = Harness(keep_results=60)
    client = harness.peer()
    handle = client.submit(b"f")
    assert client.admin(b"cancel job " + handle) == b"OK\r\n"
    assert result(client, handle)["status"] == "cancelled"


def test_a_value_over_the_budget_is_not_kept_but_its_size_is() -> None:
    harness = Harness(keep_results=60, max_result_bytes=4)
    client = harness.peer()
    handle = client.submit(b"f")
    busy = worker(harness, b"w")
    assert busy.grab() is not None
    busy.send(T.WORK_COMPLETE, handle, b"12345")
    ended = result(client, handle)
    assert (ended["value"], ended["value_size"]) == (None, 5)
    assert (ended["data"], ended["data_size"]) == ("", 0)  # the empty payload is kept


def test_results_expire_after_keep_results_and_the_oldest_go_past_the_limit() -> None:
    harness = Harness(keep_results=10, max_kept_results=2)
    client = harness.peer()
    busy = worker(harness, b"w")
    handles = []
    for _ in range(3):
        handles.append(client.submit(b"f"))
        assert busy.grab() is not None
        busy.send(T.WORK_COMPLETE, handles[-1], b"")
        harness.now += 5
    assert client.admin(b"show result " + handles[0]) == b"ERR UNKNOWN_JOB\r\n"  # over 2
    assert harness.broker.results.expire() == 1  # the second ended 10 s ago, the third 5 s
    assert client.admin(b"show result " + handles[1]) == b"ERR UNKNOWN_JOB\r\n"
    assert result(client, handles[2])["status"] == "successful"


def test_keep_results_0_records_nothing() -> None:
    harness = Harness(keep_results=0)
    client = harness.peer()
    handle = client.submit(b"f")
    busy = worker(harness, b"w")
    assert busy.grab() is not None
    busy.send(T.WORK_COMPLETE, handle, b"v")
    assert client.admin(b"show result " + handle) == b"ERR UNKNOWN_JOB\r\n"
    assert len(harness.broker.results) == 0


def test_foreground_jobs_keep_no_result() -> None:
    harness = Harness(keep_results=60)
    client = harness.peer()
    handle = client.submit(b"f", kind=T.SUBMIT_JOB)
    busy = worker(harness, b"w")
    assert busy.grab() is not None
    busy.send(T.WORK_COMPLETE, handle, b"v")
    assert client.admin(b"show result " + handle) == b"ERR UNKNOWN_JOB\r\n"


def test_results_survive_a_restart_and_expire_from_the_store(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    harness = Harness(store=SQLiteStore(path), keep_results=100)
    client = harness.peer()
    client.send(T.SUBMIT_JOB_BG, b"f", b"", b"")
    harness.commit()
    handle = b"H:test:1"
    busy = worker(harness, b"w")
    assert busy.grab() is not None
    busy.send(T.WORK_COMPLETE, handle, b"kept")
    harness.commit()
    after = restart(harness, path, keep_results=100)
    ended = result(after.peer(), handle)
    assert (ended["status"], base64.b64decode(ended["value"])) == ("successful", b"kept")
    after.now += 101
    assert after.broker.results.expire() == 1
    after.commit()
    again = restart(after, path, keep_results=100)
    assert again.peer().admin(b"show result " + handle) == b"ERR UNKNOWN_JOB\r\n"
    assert again.store is not None
    again.store.close()


def test_the_oldest_go_past_the_byte_budget_of_values_and_payloads() -> None:
    harness = Harness(keep_results=60, max_kept_result_bytes=10)
    client = harness.peer()
    busy = worker(harness, b"w")
    handles = []
    for payload in (b"aaaa", b"bbbb", b"cc"):
        handles.append(client.submit(b"f", payload))
        assert busy.grab() is not None
        busy.send(T.WORK_COMPLETE, handles[-1], b"v")  # 5 or 3 bytes a result
    assert client.admin(b"show result " + handles[0]) == b"ERR UNKNOWN_JOB\r\n"
    assert [result(client, h)["status"] for h in handles[1:]] == ["successful"] * 2
    assert harness.broker.results.bytes == 8


def test_show_results_lists_the_newest_first_by_function_without_bytes() -> None:
    harness = Harness(keep_results=60)
    client = harness.peer()
    busy = worker(harness, b"w")
    busy.send(T.CAN_DO, b"g")
    handles = []
    for function in (b"f", b"g", b"f"):
        handles.append(client.submit(function, b"payload"))
        assert busy.grab() is not None
        busy.send(T.WORK_COMPLETE, handles[-1], b"value")
    listed = client.admin(b"show results").splitlines()
    assert listed[-1] == b"."
    rows = [json.loads(line) for line in listed[:-1]]
    assert [row["handle"].encode() for row in rows] == handles[::-1]
    assert {(row["value"], row["data"]) for row in rows} == {(None, None)}
    only_f = client.admin(b"show results f").splitlines()[:-1]
    assert [json.loads(line)["handle"].encode() for line in only_f] == [handles[2], handles[0]]


def test_work_retry_runs_the_same_job_again_after_the_delay() -> None:
    harness = Harness(keep_results=60)
    client = harness.peer()
    handle = client.submit(b"f", b"payload")
    first = worker(harness, b"a")
    assert first.grab() is not None
    first.send(T.WORK_RETRY, handle, b"2.5", b"busy line")
    waiting = result(client, handle)
    assert (waiting["status"], waiting["attempts"], waiting["errors"]) == (
        "queued",
        1,
        ["busy line"],
    )
    second = worker(harness, b"b")
    assert second.grab() is None  # not before its time
    harness.advance(2.5)
    assert second.grab() == (handle, b"f", b"", b"payload")
    second.send(T.WORK_COMPLETE, handle, b"done")
    ended = result(client, handle)
    assert (ended["status"], ended["attempts"], ended["workers"]) == ("successful", 2, ["a", "b"])


def test_work_retry_with_a_bad_delay_is_refused_and_runs_again_at_once() -> None:
    harness = Harness(keep_results=60)
    client = harness.peer()
    handle = client.submit(b"f")
    first = worker(harness, b"a")
    assert first.grab() is not None
    first.received()
    first.send(T.WORK_RETRY, handle, b"soon", b"busy")
    assert first.received() == [
        (
            T.ERROR,
            (
                b"INVALID_ARGUMENTS",
                b"WORK_RETRY's delay is not a number of seconds: the job runs again now",
            ),
        )
    ]
    assert worker(harness, b"b").grab() is not None
