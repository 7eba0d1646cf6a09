"""Chains and groups in the broker core: jobs that wait for others, released or stopped as
those end, their waits kept across a restart."""

from __future__ import annotations

import json
from pathlib import Path

from broker.protocol.packets import PacketType
from broker.store.sqlite import SQLiteStore
from tests.unit.harness import Harness, Peer, restart

T = PacketType


def after(client: Peer, function: bytes, spec: bytes, data: bytes = b"") -> bytes:
    client.send(T.SUBMIT_JOB_AFTER, function, b"", spec, data)
    ((kind, args),) = client.received()
    assert kind is T.JOB_CREATED, (kind, args)
    return args[0]


def worker(harness: Harness, *functions: bytes) -> Peer:
    peer = harness.peer()
    peer.send(T.SET_CLIENT_ID, b"w")
    for function in functions:
        peer.send(T.CAN_DO, function)
    return peer


def state(peer: Peer, handle: bytes) -> dict[str, object]:
    reply = peer.admin(b"show result " + handle)
    parsed: dict[str, object] = json.loads(reply[: -len(b"\n.\n")])
    return parsed


def test_a_chain_runs_each_step_after_the_one_before_succeeded() -> None:
    harness = Harness(keep_results=60)
    client = harness.peer()
    a = client.submit(b"a", b"1")
    b = after(client, b"b", b"chain " + a)
    c = after(client, b"c", b"chain " + b)
    assert state(client, b)["waiting"] == 1 and state(client, b)["after"] == [a.decode()]
    peer = worker(harness, b"a", b"b", b"c")
    assert peer.grab()[0] == a  # type: ignore[index]
    assert peer.grab() is None  # b waits for a
    peer.send(T.WORK_COMPLETE, a, b"a's result")
    assert peer.grab()[0] == b  # type: ignore[index]
    peer.send(T.WORK_COMPLETE, b, b"b's result")
    assert peer.grab()[0] == c  # type: ignore[index]


def test_a_failure_stops_the_chain_and_says_where() -> None:
    harness = Harness(keep_results=60)
    client = harness.peer()
    a = client.submit(b"a")
    b = after(client, b"b", b"chain " + a)
    c = after(client, b"c", b"chain " + b)
    peer = worker(harness, b"a", b"b", b"c")
    assert peer.grab()[0] == a  # type: ignore[index]
    peer.send(T.WORK_EXCEPTION, a, b"disk full")
    assert peer.grab() is None  # b and c never run
    for handle in (b, c):
        ended = state(client, handle)
        assert ended["status"] == "failed" and ended["attempts"] == 0
    assert state(client, b)["errors"] == [f"chain stopped: {a.decode()} (a) failed: disk full"]
    assert state(client, c)["errors"] == state(client, b)["errors"]  # where the chain stopped
    assert [line.split(b"\t")[0] for line in client.admin(b"show failed").split(b"\n")[:3]] == [
        a,
        b,
        c,
    ]


def test_a_group_callback_runs_once_every_member_ended_whatever_the_outcome() -> None:
    harness = Harness(keep_results=60)
    client = harness.peer()
    members = [client.submit(b"m", b"%d" % n) for n in range(3)]
    callback = after(client, b"done", b" ".join([b"group", *members]))
    peer = worker(harness, b"m", b"done")
    for member, end in zip(
        members, (T.WORK_COMPLETE, T.WORK_EXCEPTION, T.WORK_COMPLETE), strict=True
    ):
        assert peer.grab()[0] == member  # type: ignore[index]
        assert state(client, callback)["waiting"] == 3 - members.index(member)
        peer.send(end, member, b"x")
    assert peer.grab()[0] == callback  # type: ignore[index]
    assert peer.grab() is None  # once


def test_cancelling_a_waiting_job_or_the_one_it_waits_for() -> None:
    harness = Harness(keep_results=60)
    client = harness.peer()
    a = client.submit(b"a")
    b = after(client, b"b", b"chain " + a)
    group_end = after(client, b"g", b"group " + a)
    assert client.admin(b"cancel job " + a) == b"OK\r\n"
    assert state(client, b)["status"] == "failed"  # a chain stops at a cancelled step
    peer = worker(harness, b"g")
    assert peer.grab()[0] == group_end  # type: ignore[index]  (a group's callback runs)
    waiting = after(client, b"b", b"chain " + client.submit(b"a"))
    assert client.admin(b"cancel job " + waiting) == b"OK\r\n"
    assert b"\tb\t" not in client.admin(b"status")  # nothing of b left waiting


def test_refusals_say_why() -> None:
    harness = Harness(keep_results=60)
    client = harness.peer()
    a = client.submit(b"a")
    cases = [
        (b"chain", b"INVALID_ARGUMENTS"),
        (b"later " + a, b"INVALID_ARGUMENTS"),
        (b"chain H:test:999", b"UNKNOWN_JOB"),
        (b"chain H:elsewhere:1", b"UNKNOWN_JOB"),
    ]
    for spec, code in cases:
        client.send(T.SUBMIT_JOB_AFTER, b"b", b"", spec, b"")
        ((kind, args),) = client.received()
        assert (kind, args[0]) == (T.ERROR, code), spec
    client.send(T.SUBMIT_JOB_AFTER, b"b", b"u", b"chain " + a, b"")
    assert client.received()[0][1][0] == b"INVALID_ARGUMENTS"
    no_results = Harness(keep_results=0).peer()
    plain = no_results.submit(b"a")
    no_results.send(T.SUBMIT_JOB_AFTER, b"b", b"", b"chain " + plain, b"")
    assert no_results.received()[0][1][0] == b"NO_RESULTS"


def test_a_wait_survives_a_restart_and_a_parent_that_ended_meanwhile_releases_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    harness = Harness(store=SQLiteStore(path), keep_results=3600)
    client = harness.peer()
    client.send(T.SUBMIT_JOB_BG, b"a", b"", b"")
    harness.commit()
    ((_, (a,)),) = client.received()
    client.send(T.SUBMIT_JOB_AFTER, b"b", b"", b"chain " + a, b"b's data")
    harness.commit()
    ((_, (b,)),) = client.received()
    again = restart(harness, path, keep_results=3600)
    peer = worker(again, b"a", b"b")
    assert peer.grab()[0] == a  # type: ignore[index]
    assert peer.grab() is None  # b still waits
    peer.send(T.WORK_COMPLETE, a, b"done")
    again.commit()  # a's end and b's release in one batch
    third = restart(again, path, keep_results=3600)
    peer = worker(third, b"a", b"b")
    assert peer.grab() == (b, b"b", b"", b"b's data")
    assert peer.grab() is None  # released once


def test_a_long_chain_that_stops_at_its_first_step_stops_whole() -> None:
    harness = Harness(keep_results=60)
    client = harness.peer()
    first = previous = client.submit(b"a")
    steps = []
    for _ in range(1500):  # deeper than Python's recursion limit, if it recursed
        previous = after(client, b"b", b"chain " + previous)
        steps.append(previous)
    peer = worker(harness, b"a", b"b")
    assert peer.grab()[0] == first  # type: ignore[index]
    peer.send(T.WORK_FAIL, first)
    assert peer.grab() is None
    last = state(client, steps[-1])
    assert last["status"] == "failed"
    assert last["errors"] == [f"chain stopped: {first.decode()} (a) failed: WORK_FAIL"]
    assert b"\tb\t" not in client.admin(b"status")
