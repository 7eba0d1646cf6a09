"""Flow control in the broker core: rate limits, limits on running jobs, paused queues,
their admin commands and their place in the store."""

from __future__ import annotations

from pathlib import Path

from broker.protocol.packets import PacketType
from broker.store.operations import FlowRule
from broker.store.sqlite import SQLiteStore
from tests.unit.harness import Harness, Peer, restart

T = PacketType


def worker(harness: Harness, *functions: bytes) -> Peer:
    peer = harness.peer()
    for function in functions:
        peer.send(T.CAN_DO, function)
    return peer


def submit(client: Peer, function: bytes, count: int) -> list[bytes]:
    return [client.submit(function, b"%d" % n) for n in range(count)]


def test_a_rate_limit_lets_one_period_through_then_one_job_per_step_in_order() -> None:
    harness = Harness(flow_rules=(FlowRule(b"mail.*", rate=2, per=1.0),))
    client = harness.peer()
    handles = submit(client, b"mail.send", 5)
    peer = worker(harness, b"mail.send")
    got = [peer.grab(), peer.grab(), peer.grab()]
    assert [job[0] if job else None for job in got] == [*handles[:2], None]
    peer.send(T.PRE_SLEEP)
    assert peer.received() == []  # asleep: nothing it may run now
    harness.advance(0.5)  # one more start allowed: the sleeping worker is woken
    assert peer.received() == [(T.NOOP, ())]
    assert peer.grab()[0] == handles[2]  # type: ignore[index]
    assert peer.grab() is None
    harness.advance(1.0)
    assert [peer.grab()[0], peer.grab()[0]] == handles[3:]  # type: ignore[index]


def test_a_held_back_function_does_not_stop_a_worker_taking_other_work() -> None:
    harness = Harness(flow_rules=(FlowRule(b"slow", rate=1, per=60.0),))
    client = harness.peer()
    submit(client, b"slow", 3)
    fast = submit(client, b"fast", 2)
    peer = worker(harness, b"slow", b"fast")
    taken = [peer.grab() for _ in range(4)]
    assert [job[1] if job else None for job in taken] == [b"slow", b"fast", b"fast", None]
    assert fast == [taken[1][0], taken[2][0]]  # type: ignore[index]


def test_at_most_n_running_and_an_end_lets_the_next_one_start() -> None:
    harness = Harness(flow_rules=(FlowRule(b"report", running=2),))
    client = harness.peer()
    handles = submit(client, b"report", 3)
    first, second = worker(harness, b"report"), worker(harness, b"report")
    assert first.grab()[0] == handles[0]  # type: ignore[index]
    assert first.grab()[0] == handles[1]  # type: ignore[index]
    assert second.grab() is None
    second.send(T.PRE_SLEEP)
    first.send(T.WORK_COMPLETE, handles[0], b"")
    assert second.received() == [(T.NOOP, ())]
    assert second.grab()[0] == handles[2]  # type: ignore[index]


def test_pause_holds_jobs_takes_submissions_and_resume_wakes_workers() -> None:
    harness = Harness()
    client = harness.peer()
    assert client.admin(b"pause import") == b"OK\r\n"
    handle = client.submit(b"import", b"x")
    peer = worker(harness, b"import")
    assert peer.grab() is None
    peer.send(T.PRE_SLEEP)
    assert client.admin(b"show limits") == b"import\t-\t-\t1\t0\t1\t-\n.\n"
    assert client.admin(b"resume import") == b"OK\r\n"
    assert peer.received() == [(T.NOOP, ())]
    assert peer.grab()[0] == handle  # type: ignore[index]
    assert client.admin(b"show limits") == b".\n"  # a rule that limits nothing is gone


def test_limit_commands_and_their_refusals() -> None:
    harness = Harness()
    admin = harness.peer()
    assert admin.admin(b"limit mail.* rate 100/m") == b"OK\r\n"
    assert admin.admin(b"limit mail.* running 3") == b"OK\r\n"
    assert admin.admin(b"show limits") == b"mail.*\t100/m\t3\t0\t0\t0\t-\n.\n"
    assert admin.admin(b"limit mail.* rate none") == b"OK\r\n"
    assert admin.admin(b"limit mail.* per-key 2") == b"OK\r\n"
    assert admin.admin(b"show limits") == b"mail.*\t-\t3\t0\t0\t0\t2\n.\n"
    assert admin.admin(b"limit mail.* per-key none") == b"OK\r\n"
    assert admin.admin(b"show limits") == b"mail.*\t-\t3\t0\t0\t0\t-\n.\n"
    assert admin.admin(b"limit mail.* rate fast").startswith(b"ERR INVALID_RATE ")
    assert admin.admin(b"limit mail.* running 0").startswith(b"ERR INVALID_LIMIT ")
    assert admin.admin(b"limit mail.*").startswith(b"ERR INVALID_ARGUMENTS ")
    assert admin.admin(b"pause").startswith(b"ERR INVALID_ARGUMENTS ")
    remote = harness.peer("10.1.2.3")
    assert remote.admin(b"pause mail.*").startswith(b"ERR PERMISSION_DENIED pause")


def test_rules_survive_a_restart_and_the_command_line_wins(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    harness = Harness(store=SQLiteStore(path))
    admin = harness.peer()
    assert admin.admin(b"pause import") == b"OK\r\n"
    assert admin.admin(b"limit mail.* rate 5/s") == b"OK\r\n"
    assert admin.admin(b"limit mail.* running 2") == b"OK\r\n"
    harness.commit()
    again = restart(harness, path, flow_rules=(FlowRule(b"mail.*", rate=9, per=60.0),))
    assert again.broker.flow.rules() == [
        FlowRule(b"import", paused=True),
        FlowRule(b"mail.*", rate=9, per=60.0, running=2),
    ]
    assert again.peer().admin(b"resume import") == b"OK\r\n"
    again.commit()
    third = restart(again, path)
    assert [rule.pattern for rule in third.broker.flow.rules()] == [b"mail.*"]


def submit_keyed(client: Peer, function: bytes, key: bytes, data: bytes) -> bytes:
    client.send(T.SUBMIT_JOB_KEYED, function, b"", key, b"1", b"0", data)
    ((kind, args),) = client.received()
    assert kind is T.JOB_CREATED, (kind, args)
    return args[0]


def test_a_per_key_limit_passes_over_held_jobs_and_an_end_frees_the_key() -> None:
    harness = Harness(flow_rules=(FlowRule(b"import", per_key=1),))
    client = harness.peer()
    a1, a2, b1 = (
        submit_keyed(client, b"import", key, data)
        for key, data in ((b"acme", b"a1"), (b"acme", b"a2"), (b"bolt", b"b1"))
    )
    plain = client.submit(b"import", b"no key")
    first, second = worker(harness, b"import"), worker(harness, b"import")
    assert first.grab()[0] == a1  # type: ignore[index]
    assert second.grab()[0] == b1  # type: ignore[index]  (a2 waits: acme is running)
    assert second.grab()[0] == plain  # type: ignore[index]  (no key: no per-key limit)
    assert second.grab() is None
    second.send(T.PRE_SLEEP)
    assert second.received() == []
    first.send(T.WORK_COMPLETE, a1, b"")
    assert second.received() == [(T.NOOP, ())]
    assert second.grab()[0] == a2  # type: ignore[index]


def test_a_concurrency_key_is_kept_in_the_store(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    harness = Harness(store=SQLiteStore(path))
    client = harness.peer()
    for data in (b"a1", b"a2"):
        client.send(T.SUBMIT_JOB_KEYED, b"import", b"", b"acme", b"1", b"0", data)
    harness.commit()
    assert [kind for kind, _ in client.received()] == [T.JOB_CREATED] * 2
    again = restart(harness, path, flow_rules=(FlowRule(b"import", per_key=1),))
    peer = worker(again, b"import")
    assert peer.grab()[3] == b"a1"  # type: ignore[index]
    assert peer.grab() is None  # the second acme job waits for the first


def test_a_long_concurrency_key_is_refused() -> None:
    client = Harness().peer()
    client.send(T.SUBMIT_JOB_KEYED, b"f", b"", b"k" * 65, b"1", b"0", b"")
    assert client.received() == [
        (T.ERROR, (b"ARGUMENT_TOO_LARGE", b"Concurrency key longer than 64 bytes"))
    ]


def test_cancelling_a_running_job_tells_a_worker_that_asked_and_no_other() -> None:
    harness = Harness(keep_results=60, retry_failures={b"f": 3})
    client = harness.peer()
    first, second = client.submit(b"f", b"1"), client.submit(b"f", b"2")
    told, untold = worker(harness, b"f"), worker(harness, b"f")
    told.send(T.OPTION_REQ, b"cancel-notices")
    assert told.received() == [(T.OPTION_RES, (b"cancel-notices",))]
    assert told.grab()[0] == first  # type: ignore[index]
    assert untold.grab()[0] == second  # type: ignore[index]
    assert client.admin(b"cancel job " + first) == b"OK\r\n"
    assert client.admin(b"cancel job " + second) == b"OK\r\n"
    assert told.received() == [(T.WORK_CANCEL, (first,))]
    assert untold.received() == []
    untold.send(T.WORK_FAIL, second)  # its late result is discarded, not retried
    assert untold.received()[0][0] is T.ERROR
    assert told.grab() is None and untold.grab() is None
    ended = client.admin(b"show result " + first)
    assert b'"status":"cancelled"' in ended and b'"attempts":1' in ended
