"""The Python client, worker and admin client against a real ``spoolgear serve``."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from broker.admin import AdminClient
from broker.client import Client, JobHandle
from broker.errors import ConnectionFailed, JobException, JobFailed, JobTimeout, ServerError
from broker.gearman.worker import AUTO_PREFETCH_MOST, AutoPrefetch
from broker.protocol.priorities import Priority
from broker.worker import TaskFunction, Worker, WorkerJob
from tests.helpers import RunningBroker, free_port, run_broker, wait_until


@contextmanager
def running_worker(
    servers: list[str], tasks: dict[str, TaskFunction], **options: float | None
) -> Iterator[Worker]:
    worker = Worker(servers, client_id="test-worker")
    for name, function in tasks.items():
        worker.register(name, function, timeout=options.get(name))
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(10)
        worker.close()
        assert not thread.is_alive()


def reverse(job: WorkerJob) -> bytes:
    return job.data[::-1]


def test_foreground_round_trip_with_progress_data_and_warnings(broker: RunningBroker) -> None:
    def chatty(job: WorkerJob) -> str:
        job.send_status(1, 2)
        job.send_data(b"part")
        job.send_warning("careful")
        job.send_status(2, 2)
        return "done"

    statuses: list[tuple[int, int]] = []
    with running_worker([broker.address], {"chatty": chatty}), Client([broker.address]) as client:
        result = client.submit("chatty", "x", on_status=lambda n, d: statuses.append((n, d)))
    assert result.data == b"done"
    assert result.chunks == (b"part",)
    assert result.warnings == (b"careful",)
    assert statuses == [(1, 2), (2, 2)]


def test_exceptions_and_failures_raise(broker: RunningBroker) -> None:
    def boom(job: WorkerJob) -> bytes:
        raise ValueError("bad input")

    with running_worker([broker.address], {"boom": boom}), Client([broker.address]) as client:
        with pytest.raises(JobException) as caught:
            client.submit("boom")
        assert caught.value.data == b"ValueError: bad input"
        assert isinstance(caught.value, JobFailed)


def test_background_job_and_its_status(broker: RunningBroker) -> None:
    started, release = threading.Event(), threading.Event()

    def slow(job: WorkerJob) -> None:
        job.send_status(3, 7)
        started.set()
        release.wait(10)

    with Client([broker.address]) as client:
        handle = client.submit_background("slow", "x", unique="the-one")
        status = client.get_status(handle)
        assert (status.known, status.running) == (True, False)
        with running_worker([broker.address], {"slow": slow}):
            assert started.wait(10)
            time.sleep(0.1)
            status = client.get_status(handle)
            assert (status.known, status.running, status.numerator, status.denominator) == (
                True,
                True,
                3,
                7,
            )
            assert client.get_status_unique("the-one").running
            release.set()
            wait_until(lambda: not client.get_status(handle).known)


def test_priorities_are_honoured(broker: RunningBroker) -> None:
    order: list[bytes] = []
    with Client([broker.address]) as client:
        client.submit_background("p", "low", priority=Priority.LOW)
        client.submit_background("p", "normal")
        client.submit_background("p", "high", priority=Priority.HIGH)
        with running_worker([broker.address], {"p": lambda job: order.append(job.data)}):
            wait_until(lambda: len(order) == 3)
    assert order == [b"high", b"normal", b"low"]


def test_epoch_job_runs_when_due_without_other_traffic(broker: RunningBroker) -> None:
    ran_at: list[float] = []
    with running_worker([broker.address], {"later": lambda job: ran_at.append(time.time())}):
        time.sleep(0.2)  # the worker is asleep now
        with Client([broker.address]) as client:
            due = int(time.time()) + 2
            client.submit_background("later", "x", at=due)
        wait_until(lambda: bool(ran_at), timeout=10)
    assert due <= ran_at[0] < due + 2


def test_timeout_raises_and_the_client_stays_usable(broker: RunningBroker) -> None:
    with Client([broker.address]) as client:
        with pytest.raises(JobTimeout):
            client.submit("nobody-serves-this", timeout=0.3)
        with running_worker([broker.address], {"rev": reverse}):
            assert client.submit("rev", "abc", timeout=10).data == b"cba"


def test_full_queue_is_a_server_error(broker: RunningBroker) -> None:
    with AdminClient(broker.address) as admin, Client([broker.address]) as client:
        client.submit_background("mq")
        admin.maxqueue("mq", 1)
        with pytest.raises(ServerError) as caught:
            client.submit_background("mq")
        assert caught.value.code == "QUEUE_ERROR"


def test_worker_timeout_requeues_to_another_worker() -> None:
    with run_broker("--job-retries", "3") as broker:
        seen: list[str] = []

        def stuck(job: WorkerJob) -> bytes:
            seen.append("stuck")
            time.sleep(1.6)
            return b"too late"

        with Client([broker.address], timeout=15) as client:
            with running_worker([broker.address], {"t": stuck}, t=1.0):
                handle = client.submit_background("t", "x")
                wait_until(lambda: seen == ["stuck"])
            with running_worker([broker.address], {"t": reverse}):
                wait_until(lambda: not client.get_status(handle).known)
            with AdminClient(broker.address) as admin:
                assert admin.show_jobs() == []


def test_same_unique_goes_to_the_same_server_of_several() -> None:
    with run_broker() as first, run_broker() as second:
        servers = [first.address, second.address]
        with Client(servers) as client:
            handles = {client.submit_background("f", f"d{i}", unique="k") for i in range(5)}
            spread = {client.submit_background("f", "d", unique=f"k{i}").server for i in range(20)}
        assert len(handles) == 1
        assert spread == set(servers)


def test_client_fails_over_to_a_live_server(broker: RunningBroker) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with Client([dead, broker.address]) as client:
        for i in range(4):
            assert client.submit_background("f", unique=f"u{i}").server == broker.address
    with Client([dead]) as client, pytest.raises(ConnectionFailed):
        client.submit_background("f")


def test_worker_reconnects_after_the_broker_restarts() -> None:
    done: list[bytes] = []
    with run_broker() as broker:
        port = broker.port
        worker_cm = running_worker([broker.address], {"r": lambda job: done.append(job.data)})
        worker_cm.__enter__()
    try:
        with run_broker("--port", str(port)) as broker, Client([broker.address]) as client:
            client.submit_background("r", "after restart")
            wait_until(lambda: done == [b"after restart"])
    finally:
        worker_cm.__exit__(None, None, None)


def test_stop_lets_the_running_job_finish(broker: RunningBroker) -> None:
    started = threading.Event()

    def slow(job: WorkerJob) -> bytes:
        started.set()
        time.sleep(0.5)
        return b"finished"

    worker = Worker([broker.address])
    worker.register("slow", slow)
    thread = threading.Thread(target=worker.work)
    thread.start()
    with Client([broker.address]) as client:
        handle = client.submit_background("slow")
        assert started.wait(10)
        worker.stop()
        thread.join(10)
        worker.close()
        assert not client.get_status(handle).known  # completed, not requeued


def test_admin_client_records(broker: RunningBroker) -> None:
    with (
        running_worker([broker.address], {"a": reverse, "b": reverse}),
        AdminClient(broker.address) as admin,
    ):
        wait_until(lambda: any(w.functions for w in admin.workers()))
        (worker,) = [w for w in admin.workers() if w.functions]
        assert (worker.ip, worker.client_id, worker.functions) == (
            "127.0.0.1",
            "test-worker",
            ("a", "b"),
        )
        assert {s.name: s.workers for s in admin.status()} == {"a": 1, "b": 1}
        assert admin.version().startswith("1.1.20")
        assert admin.getpid() == broker.process.pid
        admin.create_function("made")
        assert "made" in {s.name for s in admin.priority_status()}
        with pytest.raises(ServerError) as caught:
            admin.cancel_job("H:none:1")
        assert caught.value.code == "UNKNOWN_JOB"


def test_job_handle_equality() -> None:
    assert JobHandle("a:1", "H:x:1") == JobHandle("a:1", "H:x:1")


def test_prefetch_never_leaves_a_job_held_past_max_jobs_or_stop(broker: RunningBroker) -> None:
    done: list[bytes] = []

    def record(job: WorkerJob) -> bytes:
        done.append(job.data)
        return b""

    with Client([broker.address]) as client, AdminClient(broker.address) as admin:
        for n in range(10):
            client.submit_background("record", b"%d" % n)
        with Worker([broker.address], prefetch=3) as worker:
            worker.register("record", record)
            assert worker.work(max_jobs=4) == 4
        assert done == [b"0", b"1", b"2", b"3"]
        (status,) = [s for s in admin.status() if s.name == "record"]
        assert (status.total, status.running) == (6, 0)

        with Worker([broker.address], prefetch=3) as worker:

            def stop_after_first(job: WorkerJob) -> bytes:
                worker.stop()
                return record(job)

            worker.register("record", stop_after_first)
            ran = worker.work()
        assert 1 <= ran <= 3, "the running job plus those already handed over"
        (status,) = [s for s in admin.status() if s.name == "record"]
        assert (status.total, status.running) == (6 - ran, 0)
        assert all(job.retries == 0 for job in admin.show_jobs()), "none came back by a disconnect"


def test_left_unset_prefetch_asks_ahead_only_while_jobs_are_short() -> None:
    pace = AutoPrefetch()
    assert pace.depth() == 1, "nothing known yet: one job at a time"
    for _ in range(60):
        pace.ran(0.00005)
    assert pace.depth() == AUTO_PREFETCH_MOST, "jobs of 50 us: as far ahead as allowed"
    pace.ran(0.5)
    assert pace.depth() == 1, "one slow job: nothing is held behind the next one"
    for _ in range(60):
        pace.ran(0.0004)
    assert 1 < pace.depth() < AUTO_PREFETCH_MOST, "jobs of 0.4 ms: a few ahead"


def test_a_worker_whose_task_has_a_timeout_holds_one_job_at_a_time(broker: RunningBroker) -> None:
    """CAN_DO_TIMEOUT counts from the hand-over, so a job grabbed ahead would time out
    while it waited: left unset, prefetch stays at one however short the jobs are."""
    started, release = threading.Event(), threading.Event()

    def short_then_slow(job: WorkerJob) -> bytes:
        if job.data == b"slow":
            started.set()
            release.wait(30)
        return b""

    with Client([broker.address]) as client, AdminClient(broker.address) as admin:
        for n in range(60):
            client.submit_background("timed", b"%d" % n)
        client.submit_background("timed", b"slow")
        for n in range(10):
            client.submit_background("timed", b"%d" % n)
        with Worker([broker.address]) as worker:
            worker.register("timed", short_then_slow, timeout=60)
            thread = threading.Thread(target=worker.work, kwargs={"max_jobs": 71}, daemon=True)
            thread.start()
            assert started.wait(30)
            (status,) = [s for s in admin.status() if s.name == "timed"]
            release.set()
            thread.join(30)
        assert (status.total, status.running) == (11, 1)


def test_a_server_given_without_a_port_is_named_with_its_port_in_errors() -> None:
    """jbox's ``GEARMAN_CLIENT_SERVERS = ['127.0.0.1']``: the error says which port."""
    with socket.socket() as holder:  # bound, not listening: connections are refused
        try:
            holder.bind(("127.0.0.1", 4730))
        except OSError:
            pytest.skip("port 4730 is in use on this machine")
        with (
            Client(["127.0.0.1"]) as client,
            pytest.raises(ConnectionFailed, match=r"cannot connect to 127\.0\.0\.1:4730"),
        ):
            client.submit_background("f", b"")
