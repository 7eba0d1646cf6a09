"""Broker semantics, driven packet by packet without sockets."""

from __future__ import annotations

import pytest

from broker.protocol.packets import PacketType
from tests.unit.harness import Harness, Peer

T = PacketType


def test_handles_count_up_from_one() -> None:
    client = Harness().peer()
    assert client.submit(b"f") == b"H:test:1"
    assert client.submit(b"f") == b"H:test:2"


def test_minimal_session_from_the_protocol_document() -> None:
    h = Harness()
    worker, client = h.peer(), h.peer()
    worker.send(T.CAN_DO, b"reverse")
    worker.send(T.GRAB_JOB)
    assert worker.received() == [(T.NO_JOB, ())]
    worker.send(T.PRE_SLEEP)
    client.send(T.SUBMIT_JOB, b"reverse", b"", b"test")
    assert client.received() == [(T.JOB_CREATED, (b"H:test:1",))]
    assert worker.received() == [(T.NOOP, ())]
    worker.send(T.GRAB_JOB)
    assert worker.received() == [(T.JOB_ASSIGN, (b"H:test:1", b"reverse", b"test"))]
    worker.send(T.WORK_COMPLETE, b"H:test:1", b"tset")
    assert client.received() == [(T.WORK_COMPLETE, (b"H:test:1", b"tset"))]
    assert not h.broker.index.jobs


def test_same_unique_coalesces_and_every_foreground_client_gets_the_result() -> None:
    h = Harness()
    first, second, background, worker = h.peer(), h.peer(), h.peer(), h.peer()
    handle = first.submit(b"f", b"one", b"u", T.SUBMIT_JOB)
    assert second.submit(b"f", b"two", b"u", T.SUBMIT_JOB_HIGH) == handle
    assert background.submit(b"f", b"three", b"u") == handle
    assert first.submit(b"g", b"x", b"u") != handle  # scoped by function
    worker.send(T.CAN_DO, b"f")
    assert worker.grab() == (handle, b"f", b"u", b"one")
    worker.send(T.WORK_DATA, handle, b"chunk")
    worker.send(T.WORK_COMPLETE, handle, b"done")
    expected = [(T.WORK_DATA, (handle, b"chunk")), (T.WORK_COMPLETE, (handle, b"done"))]
    assert first.received() == expected
    assert second.received() == expected
    assert background.received() == []


def test_dash_unique_coalesces_on_the_payload_and_empty_never_does() -> None:
    client = Harness().peer()
    assert client.submit(b"f", b"same", b"-") == client.submit(b"f", b"same", b"-")
    assert client.submit(b"f", b"same", b"-") != client.submit(b"f", b"other", b"-")
    assert client.submit(b"f", b"", b"-") != client.submit(b"f", b"", b"-")
    assert client.submit(b"f", b"x") != client.submit(b"f", b"x")


def test_unique_limit_is_64_bytes_without_truncation() -> None:
    h = Harness()
    client = h.peer()
    handle = client.submit(b"f", b"", b"u" * 64)
    assert h.admin.run(client.session, b"show unique jobs") == b"u" * 64 + b"\n.\n"
    assert client.submit(b"f", b"", b"u" * 64) == handle
    client.send(T.SUBMIT_JOB_BG, b"f", b"u" * 65, b"")
    assert client.received() == [(T.ERROR, (b"ARGUMENT_TOO_LARGE", b"Unique value too large"))]


def test_priority_is_global_across_a_workers_functions() -> None:
    h = Harness()
    client, worker = h.peer(), h.peer()
    client.submit(b"A", b"a-low", kind=T.SUBMIT_JOB_LOW_BG)
    client.submit(b"B", b"b-normal")
    client.submit(b"A", b"a-high", kind=T.SUBMIT_JOB_HIGH_BG)
    client.submit(b"B", b"b-low", kind=T.SUBMIT_JOB_LOW_BG)
    worker.send(T.CAN_DO, b"B")
    worker.send(T.CAN_DO, b"A")
    order = [worker.grab()[3] for _ in range(4)]  # type: ignore[index]
    assert order == [b"a-high", b"b-normal", b"a-low", b"b-low"]


def test_functions_are_served_round_robin() -> None:
    h = Harness()
    client, worker = h.peer(), h.peer()
    for i in range(2):
        client.submit(b"A", b"A%d" % i)
    for i in range(2):
        client.submit(b"B", b"B%d" % i)
    worker.send(T.CAN_DO, b"A")
    worker.send(T.CAN_DO, b"B")
    assert [worker.grab()[3] for _ in range(4)] == [b"A0", b"B0", b"A1", b"B1"]  # type: ignore[index]


def test_pre_sleep_with_work_waiting_gets_an_immediate_noop() -> None:
    h = Harness()
    client, worker = h.peer(), h.peer()
    client.submit(b"f")
    worker.send(T.CAN_DO, b"f")
    worker.send(T.PRE_SLEEP)
    assert worker.received() == [(T.NOOP, ())]


def test_one_noop_per_sleep() -> None:
    h = Harness()
    client = h.peer()
    workers = [h.peer() for _ in range(3)]
    for worker in workers:
        worker.send(T.CAN_DO, b"f")
        worker.send(T.PRE_SLEEP)
    for _ in range(4):
        client.submit(b"f")
    assert [w.received() for w in workers] == [[(T.NOOP, ())]] * 3
    workers[0].grab()
    workers[0].send(T.PRE_SLEEP)
    assert workers[0].received() == [(T.NOOP, ())]  # work is still queued


def test_worker_wakeup_limit_rotates_over_sleepers() -> None:
    h = Harness(worker_wakeup=1)
    client = h.peer()
    workers = [h.peer() for _ in range(3)]
    for worker in workers:
        worker.send(T.CAN_DO, b"f")
        worker.send(T.PRE_SLEEP)
    woken = []
    for _ in range(3):
        client.submit(b"f")
        woken.append([bool(w.received()) for w in workers])
    assert woken == [[True, False, False], [False, True, False], [False, False, True]]


def test_lost_worker_requeues_at_the_tail_and_counts_an_attempt() -> None:
    h = Harness()
    client, first, second = h.peer(), h.peer(), h.peer()
    lost = client.submit(b"f", b"lost")
    client.submit(b"f", b"later")
    first.send(T.CAN_DO, b"f")
    assert first.grab()[0] == lost  # type: ignore[index]
    first.disconnect()
    assert h.admin.run(client.session, b"show jobs") == (
        b"H:test:1\t1\t0\t1\nH:test:2\t0\t0\t1\n.\n"
    )
    second.send(T.CAN_DO, b"f")
    assert [second.grab()[3], second.grab()[3]] == [b"later", b"lost"]  # type: ignore[index]
    first_work = (T.WORK_COMPLETE, lost, b"")
    stale = h.peer()
    stale.send(*first_work)
    assert stale.received() == [
        (T.ERROR, (b"JOB_NOT_FOUND", b"Job given in work result not found"))
    ]


def test_job_retries_bounds_the_attempts() -> None:
    h = Harness(job_retries=2)
    client = h.peer()
    handle = client.submit(b"f", b"x", kind=T.SUBMIT_JOB)
    for _ in range(2):
        worker = h.peer()
        worker.send(T.CAN_DO, b"f")
        assert worker.grab()[0] == handle  # type: ignore[index]
        worker.disconnect()
    assert client.received() == [(T.WORK_FAIL, (handle,))]
    assert not h.broker.index.jobs


def test_cant_do_and_reset_abilities_requeue_running_jobs() -> None:
    h = Harness()
    client, worker = h.peer(), h.peer()
    client.submit(b"f")
    client.submit(b"g")
    worker.send(T.CAN_DO, b"f")
    worker.send(T.CAN_DO, b"g")
    worker.grab()
    worker.grab()
    worker.send(T.CANT_DO, b"f")
    assert h.admin.run(client.session, b"status") == b"f\t1\t0\t0\ng\t1\t1\t1\n.\n"
    worker.send(T.RESET_ABILITIES)
    assert h.admin.run(client.session, b"status") == b"f\t1\t0\t0\ng\t1\t0\t0\n.\n"


def test_can_do_timeout_requeues_and_the_old_worker_is_refused() -> None:
    h = Harness()
    client, slow, other = h.peer(), h.peer(), h.peer()
    handle = client.submit(b"f", kind=T.SUBMIT_JOB)
    slow.send(T.CAN_DO_TIMEOUT, b"f", b"1500")
    slow.grab()
    h.advance(1.4)
    assert h.broker.index.jobs[handle].worker is not None
    h.advance(0.2)
    assert h.broker.index.jobs[handle].worker is None and h.broker.index.jobs[handle].retries == 1
    other.send(T.CAN_DO, b"f")
    assert other.grab()[0] == handle  # type: ignore[index]
    slow.send(T.WORK_COMPLETE, handle, b"late")
    assert slow.received()[0][0] is T.ERROR
    other.send(T.WORK_COMPLETE, handle, b"ok")
    assert client.received() == [(T.WORK_COMPLETE, (handle, b"ok"))]


def test_a_completed_job_leaves_no_timer_behind() -> None:
    h = Harness()
    client, worker = h.peer(), h.peer()
    handle = client.submit(b"f")
    worker.send(T.CAN_DO_TIMEOUT, b"f", b"10")  # raised to one second
    worker.grab()
    worker.send(T.WORK_COMPLETE, handle, b"")
    h.advance(5)
    assert h.admin.run(client.session, b"status") == b"f\t0\t0\t1\n.\n"


def test_exceptions_go_to_clients_that_asked_and_others_get_a_clean_fail() -> None:
    h = Harness()
    asking, plain, worker = h.peer(), h.peer(), h.peer()
    asking.send(T.OPTION_REQ, b"Exceptions")
    assert asking.received() == [(T.OPTION_RES, (b"Exceptions",))]
    handle = asking.submit(b"f", b"", b"u", T.SUBMIT_JOB)
    plain.submit(b"f", b"", b"u", T.SUBMIT_JOB)
    worker.send(T.CAN_DO, b"f")
    worker.grab()
    worker.send(T.WORK_EXCEPTION, handle, b"boom")
    assert asking.received() == [(T.WORK_EXCEPTION, (handle, b"boom"))]
    assert plain.raw.endswith(b"\0RES\x00\x00\x00\x0e\x00\x00\x00\x08" + handle)


def test_unknown_option_is_an_error() -> None:
    client = Harness().peer()
    client.send(T.OPTION_REQ, b"bogus")
    assert client.received() == [
        (T.ERROR, (b"UNKNOWN_OPTION", b"Server does not recognize given option"))
    ]


def test_epoch_job_waits_and_a_timer_wakes_the_sleeping_worker() -> None:
    h = Harness()
    client, worker = h.peer(), h.peer()
    worker.send(T.CAN_DO, b"f")
    worker.send(T.PRE_SLEEP)
    client.send(T.SUBMIT_JOB_EPOCH, b"f", b"", b"%d" % (h.now + 3), b"later")
    assert client.received()[0][0] is T.JOB_CREATED
    assert worker.received() == []
    assert h.admin.run(client.session, b"status") == b"f\t1\t0\t1\n.\n"
    h.advance(2)
    assert worker.received() == []
    h.advance(1)
    assert worker.received() == [(T.NOOP, ())]
    assert worker.grab()[3] == b"later"  # type: ignore[index]


def test_epoch_in_the_past_or_garbage_runs_now() -> None:
    h = Harness()
    client, worker = h.peer(), h.peer()
    client.send(T.SUBMIT_JOB_EPOCH, b"f", b"", b"abc", b"now")
    client.received()
    worker.send(T.CAN_DO, b"f")
    assert worker.grab()[3] == b"now"  # type: ignore[index]


def test_sched_is_a_recurring_cron_schedule() -> None:
    h = Harness()
    client, worker = h.peer(), h.peer()
    client.send(T.SUBMIT_JOB_SCHED, b"f", b"tick", b"*", b"", b"", b"", b"", b"payload")
    ((kind, (handle,)),) = client.received()
    assert kind is T.JOB_CREATED
    assert h.admin.run(client.session, b"show schedules").startswith(handle + b"\tf\ttick\t* * *")
    worker.send(T.CAN_DO, b"f")
    assert worker.grab() is None
    h.advance(61)
    run = worker.grab()
    assert run is not None and run[2:] == (b"tick", b"payload")
    h.advance(60)  # the first run is still going: the unique keeps runs from overlapping
    assert h.admin.run(client.session, b"status") == b"f\t1\t1\t1\n.\n"
    worker.send(T.WORK_COMPLETE, run[0], b"")
    h.advance(60)
    assert h.admin.run(client.session, b"status") == b"f\t1\t0\t1\n.\n"
    assert h.admin.run(client.session, b"cancel job " + handle) == b"OK\r\n"
    assert h.admin.run(client.session, b"show schedules") == b".\n"
    h.advance(600)
    assert h.admin.run(client.session, b"status") == b"f\t1\t0\t1\n.\n"


def test_bad_cron_field_is_an_error_packet() -> None:
    client = Harness().peer()
    client.send(T.SUBMIT_JOB_SCHED, b"f", b"", b"99", b"", b"", b"", b"", b"")
    ((kind, (code, _text)),) = client.received()
    assert (kind, code) == (T.ERROR, b"INVALID_ARGUMENTS")


def test_cancel_fails_clients_and_stops_a_running_job() -> None:
    h = Harness()
    client, worker, admin = h.peer(), h.peer(), h.peer()
    running = client.submit(b"f", b"", b"", T.SUBMIT_JOB)
    queued = client.submit(b"f", b"", b"", T.SUBMIT_JOB)
    worker.send(T.CAN_DO, b"f")
    worker.grab()
    assert admin.admin(b"cancel job " + running) == b"OK\r\n"
    assert admin.admin(b"cancel job " + queued) == b"OK\r\n"
    assert admin.admin(b"cancel job H:test:99") == b"ERR UNKNOWN_JOB\r\n"
    assert client.received() == [(T.WORK_FAIL, (running,)), (T.WORK_FAIL, (queued,))]
    worker.send(T.WORK_COMPLETE, running, b"")
    assert worker.received()[0][0] is T.ERROR
    assert client.received() == []
    assert worker.grab() is None


def test_maxqueue_counts_queued_and_running_jobs() -> None:
    h = Harness()
    client = h.peer()
    for _ in range(3):
        client.submit(b"mq")
    assert client.admin(b"maxqueue mq 10 5 1") == b"OK\r\n"
    client.submit(b"mq", kind=T.SUBMIT_JOB_HIGH_BG)
    client.submit(b"mq")
    for kind in (T.SUBMIT_JOB_BG, T.SUBMIT_JOB_LOW):
        client.send(kind, b"mq", b"", b"")
        assert client.received() == [(T.ERROR, (b"QUEUE_ERROR", b"Job queue is full"))]
    client.send(T.SUBMIT_JOB_BG, b"mq", b"", b"")
    client.received()
    assert client.admin(b"maxqueue mq") == b"OK\r\n"
    client.submit(b"mq")


def test_abandoned_foreground_job_is_skipped_but_a_coalesced_background_job_is_not() -> None:
    h = Harness()
    leaver, background, worker = h.peer(), h.peer(), h.peer()
    leaver.submit(b"f", b"fg", b"", T.SUBMIT_JOB)
    bg = background.submit(b"f", b"bg", b"shared")
    assert leaver.submit(b"f", b"", b"shared", T.SUBMIT_JOB) == bg
    leaver.disconnect()
    worker.send(T.CAN_DO, b"f")
    assert worker.grab()[0] == bg  # type: ignore[index]
    assert worker.grab() is None


def test_status_of_queued_running_and_unknown_jobs() -> None:
    h = Harness()
    client, worker = h.peer(), h.peer()
    handle = client.submit(b"f", b"", b"u1", T.SUBMIT_JOB)
    client.send(T.GET_STATUS, handle)
    assert client.received() == [(T.STATUS_RES, (handle, b"1", b"0", b"0", b"0"))]
    worker.send(T.CAN_DO, b"f")
    worker.grab()
    worker.send(T.WORK_STATUS, handle, b"5", b"10")
    assert client.received() == [(T.WORK_STATUS, (handle, b"5", b"10"))]
    client.send(T.GET_STATUS_UNIQUE, b"u1")
    assert client.received() == [(T.STATUS_RES_UNIQUE, (b"u1", b"1", b"1", b"5", b"10", b"1"))]
    worker.send(T.WORK_COMPLETE, handle, b"")
    client.received()
    client.send(T.GET_STATUS, handle)
    client.send(T.GET_STATUS_UNIQUE, b"u1")
    assert client.received() == [
        (T.STATUS_RES, (handle, b"0", b"0", b"0", b"0")),
        (T.STATUS_RES_UNIQUE, (b"u1", b"0", b"0", b"0", b"0", b"0")),
    ]


def test_server_side_packets_from_a_client_are_refused() -> None:
    client = Harness().peer()
    for kind in (T.NOOP, T.JOB_CREATED, T.UNUSED, T.ALL_YOURS, T.STATUS_RES_UNIQUE):
        client.send(kind, *([b""] * len(()))) if kind is not T.JOB_CREATED else client.send(
            kind, b"H:x:1"
        )
    assert client.received() == [(T.ERROR, (b"INVALID_COMMAND", b"Command not expected"))] * 5


def test_grab_job_all_sends_the_reducer_only_when_there_is_one() -> None:
    h = Harness()
    client, worker = h.peer(), h.peer()
    client.send(T.SUBMIT_REDUCE_JOB_BACKGROUND, b"f", b"u", b"red", b"", b"d")
    assert client.received() == [(T.JOB_CREATED, (b"H:test:1",))]
    client.submit(b"f", b"plain", b"p")
    worker.send(T.CAN_DO, b"f")
    worker.send(T.GRAB_JOB_ALL)
    worker.send(T.GRAB_JOB_ALL)
    assert worker.received() == [
        (T.JOB_ASSIGN_ALL, (b"H:test:1", b"f", b"u", b"red", b"d")),
        (T.JOB_ASSIGN_UNIQ, (b"H:test:2", b"f", b"p", b"plain")),
    ]


def test_echo_and_client_id() -> None:
    h = Harness()
    worker = h.peer()
    worker.send(T.ECHO_REQ, b"\0ping\0")
    assert worker.received() == [(T.ECHO_RES, (b"\0ping\0",))]
    worker.send(T.SET_CLIENT_ID, b"w" * 200)
    worker.send(T.CAN_DO, b"f")
    assert worker.admin(b"workers") == b"%d 127.0.0.1 %s : f\n.\n" % (worker.session.fd, b"w" * 127)


def _timer(client: Peer, spec: bytes, unique: bytes = b"tick", data: bytes = b"") -> bytes:
    client.send(T.SUBMIT_JOB_SCHED, b"f", unique, spec, b"", b"", b"", b"", data)
    ((kind, (handle, *_)),) = client.received()
    assert kind is T.JOB_CREATED, handle
    return handle


def _fired(h: Harness, client: Peer) -> list[bytes]:
    return [
        line.split(b"\t")[5]
        for line in h.admin.run(client.session, b"show schedules").splitlines()[:-1]
    ]


def test_every_timer_fires_each_interval_and_iterations_end_it() -> None:
    h = Harness()
    client, worker = h.peer(), h.peer()
    _timer(client, b"@every 5 x2", data=b"ping")
    worker.send(T.CAN_DO, b"f")
    h.advance(4)
    assert worker.grab() is None
    h.advance(1)
    run = worker.grab()
    assert run is not None and run[3] == b"ping"
    worker.send(T.WORK_COMPLETE, run[0], b"")
    assert _fired(h, client) == [b"1"]
    h.advance(5)
    run = worker.grab()
    assert run is not None
    worker.send(T.WORK_COMPLETE, run[0], b"")
    assert h.admin.run(client.session, b"show schedules") == b".\n"  # two firings: done
    h.advance(60)
    assert worker.grab() is None


def test_registering_a_schedule_again_by_unique_is_idempotent() -> None:
    h = Harness()
    client, worker = h.peer(), h.peer()
    handle = _timer(client, b"@every 10")
    h.advance(6)
    assert _timer(client, b"@every 10") == handle  # a restarted worker registering again
    h.advance(4)  # ... keeps the phase: due 10 s after the first registration
    worker.send(T.CAN_DO, b"f")
    assert worker.grab() is not None
    assert _timer(client, b"@every 30") == handle  # a changed spec replaces it
    assert h.admin.run(client.session, b"show schedules").split(b"\t")[3] == b"@every 30"
    assert _timer(client, b"@every 30", unique=b"other") != handle
    assert _timer(client, b"@every 30", unique=b"") != _timer(client, b"@every 30", unique=b"")


@pytest.mark.parametrize("spec", [b"@every 0", b"@every x", b"@every 5 x0", b"@every 5 6 7"])
def test_bad_timer_is_an_error_packet(spec: bytes) -> None:
    client = Harness().peer()
    client.send(T.SUBMIT_JOB_SCHED, b"f", b"", spec, b"", b"", b"", b"", b"")
    ((kind, (code, text)),) = client.received()
    assert (kind, code) == (T.ERROR, b"INVALID_ARGUMENTS")
    assert b"timer" in text


def test_a_timer_with_cron_fields_is_refused() -> None:
    client = Harness().peer()
    client.send(T.SUBMIT_JOB_SCHED, b"f", b"", b"@every 5", b"3", b"", b"", b"", b"")
    ((kind, (code, _text)),) = client.received()
    assert (kind, code) == (T.ERROR, b"INVALID_ARGUMENTS")


def test_a_transient_function_without_workers_refuses_jobs_after_the_grace_period() -> None:
    harness = Harness(transient=(b"spoolgear.farm.*",), transient_grace=10.0)
    sender = harness.peer()
    sender.submit(b"spoolgear.farm.early")  # members may still be connecting
    harness.advance(11)
    sender.send(T.SUBMIT_JOB_BG, b"spoolgear.farm.nobody", b"", b"hello")
    assert sender.received() == [
        (T.ERROR, (b"NO_WORKERS", b"No worker serves this transient function"))
    ]
    sender.submit(b"durable.function")  # only transient functions are refused
    member = harness.peer()
    member.send(T.CAN_DO, b"spoolgear.farm.busy")
    sender.submit(b"spoolgear.farm.busy")
    member.disconnect()  # a member restarting: its farm is still served for a while
    harness.advance(5)
    sender.submit(b"spoolgear.farm.busy")
    harness.advance(6)
    sender.send(T.SUBMIT_JOB_BG, b"spoolgear.farm.busy", b"", b"")
    assert sender.received()[0][1][0] == b"NO_WORKERS"


def test_idle_function_names_are_forgotten_and_come_back_when_used() -> None:
    harness = Harness()
    client, worker = harness.peer(), harness.peer()
    client.submit(b"made.up")
    worker.send(T.CAN_DO, b"made.up")
    job = worker.grab()
    assert job is not None
    worker.send(T.WORK_COMPLETE, job[0], b"")
    worker.disconnect()
    assert client.admin(b"create function kept") == b"OK\r\n"
    broker = harness.broker
    assert broker.forget_idle_functions(60) == 0  # first seen idle now
    harness.advance(59)
    assert broker.forget_idle_functions(60) == 0
    harness.advance(1)
    assert broker.forget_idle_functions(60) == 1
    assert set(broker.functions.by_name) == {b"kept"}
    client.submit(b"made.up")  # used again: simply there again
    assert b"made.up\t1\t0\t0" in client.admin(b"status")
