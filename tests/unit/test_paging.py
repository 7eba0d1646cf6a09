"""Bounded queues: jobs past the window live only in the SQLite store until paged in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.core.paging import read_pages
from broker.protocol.packets import PacketType
from broker.protocol.priorities import Priority
from broker.store.base import PagingStore
from broker.store.postgresql import PostgreSQLStore
from broker.store.sqlite import SQLiteStore
from tests.unit.harness import Harness, Peer, restart

T = PacketType
WINDOW = 4


@pytest.fixture
def harness(store_path: Path) -> Iterator[Harness]:
    store = SQLiteStore(store_path)
    yield Harness(store=store, window=WINDOW)
    store.close()


def submit(
    harness: Harness,
    client: Peer,
    *payloads: bytes,
    unique: bytes = b"",
    kind: PacketType = T.SUBMIT_JOB_BG,
) -> list[bytes]:
    """Submit background jobs and return their handles once committed."""
    for payload in payloads:
        client.send(kind, b"f", unique, payload)
    harness.commit()
    replies = client.received()
    assert all(packet_type is T.JOB_CREATED for packet_type, _ in replies), replies
    return [args[0] for _, args in replies]


def drain(harness: Harness, worker: Peer) -> list[bytes]:
    """Grab and complete jobs until none is left."""
    payloads = []
    while True:
        job = worker.grab()
        if job is None:
            harness.commit()
            job = worker.grab()
            if job is None:
                return payloads
        worker.send(T.WORK_COMPLETE, job[0], b"")
        harness.commit()  # the server commits (and reads pages) every loop turn
        payloads.append(job[3])
        assert all(
            len(queue) <= WINDOW for queue in harness.broker.functions.by_name[b"f"].queues.values()
        )


def complete(worker: Peer, count: int) -> None:
    """Grab and complete ``count`` jobs that are in memory (no commit, so no page arrives)."""
    for _ in range(count):
        job = worker.grab()
        assert job is not None
        worker.send(T.WORK_COMPLETE, job[0], b"")


def status_line(client: Peer) -> bytes:
    return client.admin(b"status").split(b"\n")[0]


def test_jobs_past_the_window_stay_in_the_store_and_run_in_order(harness: Harness) -> None:
    client = harness.peer()
    payloads = [b"%d" % n for n in range(30)]
    submit(harness, client, *payloads)
    function = harness.broker.functions.by_name[b"f"]
    assert len(harness.broker.index.jobs) == WINDOW
    assert function.spilled == {Priority.NORMAL: 30 - WINDOW}
    assert status_line(client) == b"f\t30\t0\t0"
    assert client.admin(b"prioritystatus") == b"f\t0\t30\t0\t0\n.\n"
    worker = harness.peer()
    worker.send(T.CAN_DO, b"f")
    assert drain(harness, worker) == payloads
    assert not function.has_spilled
    assert harness.store is not None and harness.store.load().jobs == []


def test_priorities_page_separately(harness: Harness) -> None:
    client = harness.peer()
    submit(harness, client, *[b"low%d" % n for n in range(6)], kind=T.SUBMIT_JOB_LOW_BG)
    submit(harness, client, *[b"high%d" % n for n in range(6)], kind=T.SUBMIT_JOB_HIGH_BG)
    worker = harness.peer()
    worker.send(T.CAN_DO, b"f")
    assert drain(harness, worker) == [b"high%d" % n for n in range(6)] + [
        b"low%d" % n for n in range(6)
    ]


def test_a_sleeping_worker_is_woken_when_a_page_arrives(harness: Harness) -> None:
    client = harness.peer()
    submit(harness, client, *[b"%d" % n for n in range(WINDOW * 3)])
    worker = harness.peer()
    worker.send(T.CAN_DO, b"f")
    complete(worker, WINDOW)
    worker.send(T.PRE_SLEEP)
    assert worker.received() == []
    harness.commit()
    assert worker.received() == [(T.NOOP, ())]


def test_a_grab_waits_for_the_page_instead_of_getting_no_job(harness: Harness) -> None:
    client = harness.peer()
    submit(harness, client, *[b"%d" % n for n in range(WINDOW * 3)])
    worker = harness.peer()
    worker.send(T.CAN_DO, b"f")
    complete(worker, WINDOW)
    worker.send(T.GRAB_JOB_UNIQ)
    assert worker.received() == []
    harness.commit()
    [(packet_type, args)] = worker.received()
    assert (packet_type, args[3]) == (T.JOB_ASSIGN_UNIQ, b"%d" % WINDOW)


@pytest.fixture(params=["sqlite", "postgresql"])
def either_harness(request: pytest.FixtureRequest, store_path: Path) -> Iterator[Harness]:
    """On SQLite or on PostgreSQL, whose unique index finds spilled jobs at commit."""
    store: PagingStore = SQLiteStore(store_path)
    if request.param == "postgresql":
        store = PostgreSQLStore(request.getfixturevalue("postgres_store"))
    yield Harness(store=store, window=WINDOW)
    store.close()


def test_coalescing_finds_spilled_jobs_before_and_after_their_commit(
    either_harness: Harness,
) -> None:
    harness = either_harness
    client = harness.peer()
    submit(harness, client, *[b"%d" % n for n in range(WINDOW)])
    client.send(T.SUBMIT_JOB_BG, b"f", b"same", b"first")
    client.send(T.SUBMIT_JOB_BG, b"f", b"same", b"second")
    harness.commit()
    first, second = client.received()
    assert first == second
    harness.commit()  # on PostgreSQL the job spilled once placed, after its commit
    assert submit(harness, client, b"third", unique=b"same") == [first[1][0]]
    assert status_line(client) == b"f\t5\t0\t0"


def test_status_requests_see_spilled_jobs(harness: Harness) -> None:
    client = harness.peer()
    submit(harness, client, *[b"%d" % n for n in range(WINDOW)])
    [handle] = submit(harness, client, b"spilled", unique=b"u-spilled")
    assert handle not in harness.broker.index.jobs
    client.send(T.GET_STATUS, handle)
    client.send(T.GET_STATUS_UNIQUE, b"u-spilled")
    client.send(T.GET_STATUS, b"H:test:999")
    assert client.received() == [
        (T.STATUS_RES, (handle, b"1", b"0", b"0", b"0")),
        (T.STATUS_RES_UNIQUE, (b"u-spilled", b"1", b"0", b"0", b"0", b"0")),
        (T.STATUS_RES, (b"H:test:999", b"0", b"0", b"0", b"0")),
    ]


def test_cancelling_a_spilled_job(harness: Harness) -> None:
    client = harness.peer()
    handles = submit(harness, client, *[b"%d" % n for n in range(8)])
    assert client.admin(b"cancel job " + handles[6]) == b"OK\r\n"
    assert client.admin(b"cancel job " + handles[6]) == b"ERR UNKNOWN_JOB\r\n"
    assert status_line(client) == b"f\t7\t0\t0"
    worker = harness.peer()
    worker.send(T.CAN_DO, b"f")
    assert drain(harness, worker) == [b"0", b"1", b"2", b"3", b"4", b"5", b"7"]


def test_a_job_cancelled_while_its_page_is_being_read_is_skipped(harness: Harness) -> None:
    client = harness.peer()
    handles = submit(harness, client, *[b"%d" % n for n in range(8)])
    worker = harness.peer()
    worker.send(T.CAN_DO, b"f")
    complete(worker, 3)
    broker, store = harness.broker, harness.store
    assert isinstance(store, SQLiteStore)
    # What the committer does, with an admin command between reading the page and using it.
    batch = broker.take_batch()
    store.write(batch.operations)
    pages = read_pages(store, batch.page_requests)
    assert client.admin(b"cancel job " + handles[5]) == b"OK\r\n"
    broker.apply_batch(batch, pages)
    assert drain(harness, worker) == [b"3", b"4", b"6", b"7"]


def test_a_requeued_job_goes_to_the_tail_of_a_spilling_queue(harness: Harness) -> None:
    client = harness.peer()
    submit(harness, client, *[b"%d" % n for n in range(6)])
    worker = harness.peer()
    worker.send(T.CAN_DO, b"f")
    assert worker.grab() is not None
    worker.disconnect()
    harness.commit()
    worker = harness.peer()
    worker.send(T.CAN_DO, b"f")
    assert drain(harness, worker) == [b"1", b"2", b"3", b"4", b"5", b"0"]


def test_a_delayed_job_that_falls_due_joins_the_tail_once(harness: Harness) -> None:
    client = harness.peer()
    client.send(T.SUBMIT_JOB_EPOCH, b"f", b"", b"%d" % (harness.now + 10), b"later")
    submit(harness, client, *[b"%d" % n for n in range(6)])
    harness.advance(10)
    worker = harness.peer()
    worker.send(T.CAN_DO, b"f")
    assert drain(harness, worker) == [b"0", b"1", b"2", b"3", b"4", b"5", b"later"]


def test_restart_loads_one_window_per_queue_and_counts_the_rest(
    harness: Harness, store_path: Path
) -> None:
    client = harness.peer()
    payloads = [b"%d" % n for n in range(20)]
    submit(harness, client, *payloads)
    worker = harness.peer()
    worker.send(T.CAN_DO, b"f")
    running = worker.grab()
    assert running is not None
    harness.commit()
    after = restart(harness, store_path, window=WINDOW)
    try:
        assert len(after.broker.index.jobs) == WINDOW
        assert status_line(after.peer()) == b"f\t20\t0\t0"
        worker = after.peer()
        worker.send(T.CAN_DO, b"f")
        assert drain(after, worker) == [*payloads[1:], b"0"]
    finally:
        assert after.store is not None
        after.store.close()


def test_max_queue_counts_spilled_jobs(harness: Harness) -> None:
    client = harness.peer()
    submit(harness, client, *[b"%d" % n for n in range(6)])
    client.admin(b"maxqueue f 6")
    client.send(T.SUBMIT_JOB_BG, b"f", b"", b"one too many")
    assert client.received() == [(T.ERROR, (b"QUEUE_ERROR", b"Job queue is full"))]
