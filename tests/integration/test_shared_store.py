"""Several brokers on one PostgreSQL database: a broker that stops, dies, is paused past
its lease or loses the database, and what the others do with its jobs. Real brokers,
real workers connected to all of them, a real PostgreSQL cluster started by the tests."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections import Counter
from contextlib import ExitStack

import psycopg

from broker.admin import AdminClient
from broker.client import Client
from broker.protocol.packets import PacketType
from broker.worker import Worker, WorkerJob
from tests.helpers import (
    SPOOLGEAR,
    RawConnection,
    RunningBroker,
    burst_drain,
    pipelined_submitters,
    queued,
    run_broker,
    wait_until,
)
from tests.metrics import get, metrics_address, scrape, value
from tests.postgres import Cluster
from tests.with_django.project import manage

T = PacketType
LEASE = "2"


def test_a_broker_stopped_cleanly_is_taken_over_at_once(postgres_store: str) -> None:
    with (
        run_broker("--store", postgres_store) as first,
        run_broker("--store", postgres_store, "--metrics-listen", "0") as second,
    ):
        with Client([first.address]) as client:
            for n in range(100):
                client.submit_background("f", b"%d" % n)
        assert queued(second.address) == 0  # each broker serves what was submitted to it
        first.process.send_signal(signal.SIGTERM)
        assert first.process.wait(10) == 0
        wait_until(lambda: queued(second.address) == 100, "the second broker took over", timeout=60)
        ran = [data for _, data in burst_drain(second.address, "f")]
        samples = scrape(metrics_address(second.listening))
    assert ran == [b"%d" % n for n in range(100)]  # in their order
    assert value(samples, "spoolgear_jobs_taken_over_total") == 100


def test_three_brokers_one_killed_under_load_lose_no_acknowledged_job(postgres_store: str) -> None:
    seen: list[bytes] = []
    given_by: dict[bytes, list[str]] = {}
    lock = threading.Lock()

    def record(job: WorkerJob) -> bytes:
        with lock:
            seen.append(job.data)
            given_by.setdefault(job.data, []).append(job.server)
        time.sleep(0.001)  # so that some jobs are running when the broker dies
        return b""

    with ExitStack() as stack:
        brokers: list[RunningBroker] = [
            stack.enter_context(run_broker("--store", postgres_store, "--store-lease", LEASE))
            for _ in range(3)
        ]
        addresses = [broker.address for broker in brokers]
        workers = [stack.enter_context(Worker(addresses)) for _ in range(4)]
        threads = []
        for worker in workers:
            worker.register("f", record)
            threads.append(threading.Thread(target=worker.work))
            threads[-1].start()
        victim = brokers[0]
        with pipelined_submitters(victim.port, clients=2) as acked:
            wait_until(
                lambda: sum(map(len, acked)) >= 3000, "3000 jobs were acknowledged", timeout=60
            )
            victim.process.kill()
            victim.process.wait()
        acknowledged = {payload for client in acked for payload in client}
        wait_until(lambda: acknowledged <= set(seen), "every acknowledged job ran", timeout=60)
        for worker in workers:
            worker.stop()
        for thread in threads:
            thread.join(30)
    # At least once: a job the killed broker had handed out (and whose end it had not
    # stored yet) runs again, on another broker; a job that only waited runs once.
    twice = [payload for payload, count in Counter(seen).items() if count > 1]
    assert all(given_by[payload][0] == victim.address for payload in twice)
    assert all(victim.address not in given_by[payload][1:] for payload in twice)
    assert all(count <= 2 for count in Counter(seen).values())


def test_a_paused_broker_hands_out_and_completes_nothing_once_taken_over(
    postgres_store: str,
) -> None:
    with (
        run_broker("--store", postgres_store, "--store-lease", LEASE) as paused,
        run_broker("--store", postgres_store, "--store-lease", LEASE) as other,
    ):
        with RawConnection(paused.port) as raw:
            raw.send(T.SUBMIT_JOB_BG, b"f", b"", b"was running")
            raw.packet()
            raw.send(T.CAN_DO, b"f")
            raw.send(T.GRAB_JOB)
            assigned = raw.packet()
            assert assigned.type is T.JOB_ASSIGN
            raw.send(T.SUBMIT_JOB_BG, b"f", b"", b"was queued")
            raw.packet()
            paused.process.send_signal(signal.SIGSTOP)
            wait_until(lambda: queued(other.address) == 2, "the other broker took over", timeout=60)
            paused.process.send_signal(signal.SIGCONT)
            raw.send(T.WORK_COMPLETE, assigned.args[0], b"done through the paused broker")
            raw.send(T.GRAB_JOB)
            after = raw.packets_until_closed()
        assert paused.process.wait(30) == 1
        assert T.JOB_ASSIGN not in [packet.type for packet in after]
        ran = [data for _, data in burst_drain(other.address, "f")]
    assert sorted(ran) == [b"was queued", b"was running"]
    assert "lost its lease on the store" in paused.log
    assert "let its lease run out: taking over its jobs" in other.log


def test_a_database_outage_longer_than_the_lease_takes_nobody_over(
    postgres_cluster: Cluster, postgres_store: str
) -> None:
    lease = ("--store", postgres_store, "--store-lease", "1")
    with (
        run_broker(*lease, "--metrics-listen", "0") as first,
        run_broker(*lease) as second,
    ):
        health = metrics_address(first.listening)
        with Client([first.address]) as client:
            client.submit_background("f", b"before")
        postgres_cluster.stop("fast")
        wait_until(
            lambda: get(health, "/readyz")[0] == 503, "the broker said it is not ready", timeout=60
        )
        assert "lease on the shared store has not been renewed" in get(health, "/readyz")[1]
        time.sleep(3)  # every lease runs out meanwhile
        postgres_cluster.start()
        for broker in (first, second):
            with Client([broker.address]) as client:
                client.submit_background("f", b"after")  # waits for the reconnection
        assert get(health, "/readyz")[0] == 200
        time.sleep(2)  # a takeover, were there one, would come one lease after
        assert first.process.poll() is None and second.process.poll() is None
        assert (queued(first.address), queued(second.address)) == (2, 1)
    assert "taking over" not in first.log + second.log


def test_the_failed_list_and_what_each_broker_holds_are_shown_on_every_broker(
    postgres_store: str,
) -> None:
    with (
        run_broker("--store", postgres_store) as first,
        run_broker("--store", postgres_store) as second,
    ):
        with RawConnection(first.port) as raw:
            raw.send(T.SUBMIT_JOB_BG, b"f", b"", b"fails on the first broker")
            raw.packet()
            raw.send(T.CAN_DO, b"f")
            raw.send(T.GRAB_JOB)
            handle = raw.packet().args[0]
            raw.send(T.WORK_FAIL, handle)
        with AdminClient(second.address) as admin:
            wait_until(admin.show_failed, "the other broker shows the failure", timeout=60)
            (failed,) = admin.show_failed()
            assert failed.function == "f"
            assert admin.retry_failed(failed.handle) == 1
        with AdminClient(first.address) as admin:
            wait_until(
                lambda: admin.show_failed() == [], "the retry through the other broker", timeout=60
            )
        with AdminClient(second.address) as admin:
            brokers = admin.show_brokers()
        result = manage(second.address, "gearman_server_info")
        listed = subprocess.run(
            [*SPOOLGEAR, "brokers", "--server", second.address],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert listed.returncode == 0, listed.stderr
    assert "this broker" in listed.stdout and "written by applications" in listed.stdout
    assert [(b.state, b.jobs, b.running) for b in brokers] == [
        ("this broker", 1, 0),
        ("live", 0, 0),
        ("waiting", 0, 0),
    ]
    assert result.returncode == 0, result.stderr
    assert "Jobs in the Store" in result.stdout
    assert "The tables above count this broker's jobs" in result.stdout


def test_a_unique_coalesces_onto_the_job_another_broker_holds(postgres_store: str) -> None:
    with (
        run_broker("--store", postgres_store) as first,
        run_broker("--store", postgres_store) as second,
    ):
        with Client([first.address]) as client:
            held = client.submit_background("f", b"first", unique="report-42")
        with Client([second.address]) as client:
            coalesced = client.submit_background("f", b"second", unique="report-42")
            status = client.get_status(coalesced)
        assert coalesced.handle.rsplit(":", 1)[1] == held.handle.rsplit(":", 1)[1]
        assert (status.known, status.running) == (True, False)
        assert queued(second.address) == 0
        assert [data for _, data in burst_drain(first.address, "f")] == [b"first"]


def test_a_schedule_another_broker_holds_is_refused_not_duplicated(postgres_store: str) -> None:
    schedule = (b"report", b"nightly", b"0", b"3", b"", b"", b"", b"")
    with (
        run_broker("--store", postgres_store) as first,
        run_broker("--store", postgres_store) as second,
    ):
        with RawConnection(first.port) as raw:
            raw.send(T.SUBMIT_JOB_SCHED, *schedule)
            assert raw.packet().type is T.JOB_CREATED
        with RawConnection(second.port) as raw:
            raw.send(T.SUBMIT_JOB_SCHED, *schedule)
            refused = raw.packet()
        with AdminClient(second.address) as admin:
            assert admin.show_schedules() == []
    assert refused.type is T.ERROR
    code, text = refused.args
    assert code == b"SCHEDULE_ELSEWHERE"
    assert b"holds this schedule: change it there" in text


def test_the_lease_lasts_what_store_lease_says(postgres_store: str) -> None:
    with (
        run_broker("--store", postgres_store, "--store-lease", "3"),
        psycopg.connect(postgres_store) as db,
    ):
        row = db.execute(
            "SELECT extract(epoch FROM lease_until - clock_timestamp()) FROM spoolgear_brokers"
        ).fetchone()
    assert row is not None and 0 < row[0] <= 3


def test_brokers_of_a_store_that_is_not_shared_is_a_clear_refusal(broker: RunningBroker) -> None:
    result = subprocess.run(
        [*SPOOLGEAR, "brokers", "--server", broker.address],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "NO_SHARED_STORE: this broker's store is not shared with other brokers" in result.stderr
