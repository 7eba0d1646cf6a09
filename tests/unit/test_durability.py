"""Durable semantics in the core: acknowledgements after commit, restart, the failed list."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.protocol.packets import PacketType
from broker.store.sqlite import SQLiteStore
from tests.unit.harness import Harness, restart

T = PacketType


@pytest.fixture
def harness(store_path: Path) -> Iterator[Harness]:
    store = SQLiteStore(store_path)
    yield Harness(store=store)
    store.close()


def test_background_ack_waits_for_the_commit_and_keeps_reply_order(harness: Harness) -> None:
    client = harness.peer()
    client.send(T.SUBMIT_JOB_BG, b"f", b"", b"x")
    client.send(T.ECHO_REQ, b"after")
    assert client.received() == []
    harness.commit()
    assert client.received() == [(T.JOB_CREATED, (b"H:test:1",)), (T.ECHO_RES, (b"after",))]


def test_foreground_jobs_are_not_stored_or_delayed(harness: Harness) -> None:
    client = harness.peer()
    client.send(T.SUBMIT_JOB, b"f", b"", b"x")
    assert client.received() == [(T.JOB_CREATED, (b"H:test:1",))]
    harness.commit()
    assert harness.store is not None and harness.store.load().jobs == []


def test_coalescing_onto_an_uncommitted_job_also_waits(harness: Harness) -> None:
    first, second = harness.peer(), harness.peer()
    first.send(T.SUBMIT_JOB_BG, b"f", b"same", b"x")
    second.send(T.SUBMIT_JOB_BG, b"f", b"same", b"x")
    assert second.received() == []
    harness.commit()
    assert second.received() == [(T.JOB_CREATED, (b"H:test:1",))]


def test_restart_brings_back_jobs_in_order_with_new_handles_after_them(
    harness: Harness, store_path: Path
) -> None:
    client = harness.peer()
    for kind, data in [
        (T.SUBMIT_JOB_LOW_BG, b"low"),
        (T.SUBMIT_JOB_BG, b"normal"),
        (T.SUBMIT_JOB_HIGH_BG, b"high"),
    ]:
        client.send(kind, b"f", b"", data)
    client.send(T.SUBMIT_JOB_EPOCH, b"f", b"", b"%d" % (harness.now + 60), b"later")
    harness.commit()
    after = restart(harness, store_path)
    worker = after.peer()
    worker.send(T.CAN_DO, b"f")
    assert [worker.grab()[3] for _ in range(3)] == [b"high", b"normal", b"low"]  # type: ignore[index]
    assert worker.grab() is None
    after.advance(60)
    assert worker.grab()[3] == b"later"  # type: ignore[index]
    assert after.peer().submit(b"f", kind=T.SUBMIT_JOB) == b"H:test:100001"


def test_a_job_running_at_restart_is_requeued_with_the_attempt_counted(
    harness: Harness, store_path: Path
) -> None:
    client, worker = harness.peer(), harness.peer()
    client.send(T.SUBMIT_JOB_BG, b"f", b"", b"first")
    client.send(T.SUBMIT_JOB_BG, b"f", b"", b"second")
    worker.send(T.CAN_DO, b"f")
    worker.grab()
    harness.commit()
    after = restart(harness, store_path)
    assert after.peer().admin(b"show jobs") == b"H:test:1\t1\t0\t1\nH:test:2\t0\t0\t1\n.\n"
    worker = after.peer()
    worker.send(T.CAN_DO, b"f")
    handle, _, _, data = worker.grab()  # type: ignore[misc]
    worker.send(T.WORK_COMPLETE, handle, b"")
    after.commit()
    assert data == b"second"
    assert [j.data for j in restart(after, store_path).broker.index.jobs.values()] == [b"first"]


def test_out_of_attempts_at_restart_goes_to_the_failed_list(
    harness: Harness, store_path: Path
) -> None:
    client, worker = harness.peer(), harness.peer()
    client.send(T.SUBMIT_JOB_BG, b"f", b"", b"x")
    worker.send(T.CAN_DO, b"f")
    worker.grab()
    harness.commit()
    after = restart(harness, store_path, job_retries=1)
    assert not after.broker.index.jobs
    assert after.peer().admin(b"show failed").startswith(b"H:test:1\tf\t1\t")


def test_failures_are_retried_then_kept_and_can_be_replayed(
    harness: Harness, store_path: Path
) -> None:
    failing = Harness(store=harness.store, retry_failures={b"*": 2})
    client, worker = failing.peer(), failing.peer()
    client.send(T.SUBMIT_JOB_BG, b"f", b"u", b"payload")
    failing.commit()
    ((_, (handle,)),) = client.received()
    worker.send(T.CAN_DO, b"f")
    worker.grab()
    worker.send(T.WORK_EXCEPTION, handle, b"first try")
    assert failing.broker.index.jobs[handle].retries == 1
    worker.grab()
    worker.send(T.WORK_FAIL, handle)
    assert not failing.broker.index.jobs
    admin = failing.peer()
    assert admin.admin(b"show failed") == (
        b"%s\tf\t2\t%d\tWORK_FAIL; gave up after 2 attempts\n.\n" % (handle, failing.now)
    )
    failing.commit()
    again = restart(failing, store_path)
    admin = again.peer()
    assert admin.admin(b"show failed").startswith(handle)
    assert admin.admin(b"retry failed nonsense") == b"ERR UNKNOWN_JOB\r\n"
    assert admin.admin(b"retry failed all") == b"OK 1\r\n"
    assert admin.admin(b"show failed") == b".\n"
    worker = again.peer()
    worker.send(T.CAN_DO, b"f")
    assert worker.grab()[2:] == (b"u", b"payload")  # type: ignore[index]


def test_lost_workers_exhausting_job_retries_land_in_the_failed_list(harness: Harness) -> None:
    limited = Harness(store=harness.store, job_retries=1)
    client, worker = limited.peer(), limited.peer()
    client.send(T.SUBMIT_JOB_BG, b"f", b"", b"x")
    worker.send(T.CAN_DO, b"f")
    worker.grab()
    worker.disconnect()
    assert b"\t1\t" in (failed := limited.peer().admin(b"show failed"))  # one attempt
    assert failed.endswith(b"\tworker gone\n.\n")
    assert limited.peer().admin(b"drop failed all") == b"OK 1\r\n"


def test_failed_list_is_bounded(harness: Harness) -> None:
    small = Harness(store=harness.store, job_retries=1, max_failed_jobs=2)
    client = small.peer()
    for _ in range(3):
        client.send(T.SUBMIT_JOB_BG, b"f", b"", b"x")
        worker = small.peer()
        worker.send(T.CAN_DO, b"f")
        worker.grab()
        worker.disconnect()
    assert [handle for handle, _ in small.broker.failed.items()] == [b"H:test:2", b"H:test:3"]


def test_schedules_survive_a_restart(harness: Harness, store_path: Path) -> None:
    client = harness.peer()
    client.send(T.SUBMIT_JOB_SCHED, b"tick", b"t", b"*/5", b"", b"", b"", b"", b"")
    harness.commit()
    after = restart(harness, store_path)
    assert after.peer().admin(b"show schedules").startswith(b"H:test:1\ttick\tt\t*/5 * * * *")
    assert after.peer().admin(b"cancel job H:test:1") == b"OK\r\n"
    after.commit()
    assert restart(after, store_path).broker.scheduler.schedules == {}


def test_missed_timer_firings_coalesce_into_one_at_start_then_resume(
    harness: Harness, store_path: Path
) -> None:
    client = harness.peer()
    client.send(T.SUBMIT_JOB_SCHED, b"tick", b"t", b"@every 10", b"", b"", b"", b"", b"")
    harness.commit()
    worker = harness.peer()
    worker.send(T.CAN_DO, b"tick")
    harness.advance(10)  # fired once: the job and the next run are stored together
    first = worker.grab()
    assert first is not None
    worker.send(T.WORK_COMPLETE, first[0], b"")
    harness.commit()
    harness.now += 35  # down for three and a half intervals
    after = restart(harness, store_path)
    worker = after.peer()
    worker.send(T.CAN_DO, b"tick")
    after.advance(0)
    catch_up = worker.grab()
    assert catch_up is not None and worker.grab() is None  # one run for the missed ones
    worker.send(T.WORK_COMPLETE, catch_up[0], b"")
    fields = after.peer().admin(b"show schedules").split(b"\t")
    assert (int(fields[4]), fields[5]) == (int(after.now) + 10, b"2\n.\n")


def test_a_finished_timer_is_gone_after_restart(harness: Harness, store_path: Path) -> None:
    client = harness.peer()
    client.send(T.SUBMIT_JOB_SCHED, b"tick", b"t", b"@every 1 x1", b"", b"", b"", b"", b"")
    harness.commit()
    harness.advance(1)
    harness.commit()
    assert restart(harness, store_path).broker.scheduler.schedules == {}


def test_transient_functions_are_never_stored_and_have_a_queue_bound(store_path: Path) -> None:
    store = SQLiteStore(store_path)
    harness = Harness(store=store, transient=(b"spoolgear.farm.*",), transient_max_queue=2)
    client = harness.peer()
    client.send(T.SUBMIT_JOB_BG, b"spoolgear.farm.mail", b"", b"one")
    assert client.received() == [(T.JOB_CREATED, (b"H:test:1",))]  # no commit to wait for
    client.send(T.SUBMIT_JOB_BG, b"spoolgear.farm.mail", b"", b"two")
    client.send(T.SUBMIT_JOB_BG, b"spoolgear.farm.mail", b"", b"three")
    assert client.received()[1] == (T.ERROR, (b"QUEUE_ERROR", b"Job queue is full"))
    client.send(T.SUBMIT_JOB_BG, b"durable", b"", b"kept")
    harness.commit()
    worker = harness.peer()
    worker.send(T.CAN_DO, b"spoolgear.farm.mail")
    assert worker.grab() is not None
    harness.commit()
    assert [job.function for job in store.load().jobs] == [b"durable"]
    assert restart(harness, store_path).broker.index.jobs.keys() == {b"H:test:3"}
