"""Chains and groups on real brokers: results passed from step to step, a chain that
survives kill -9 of its broker between steps, a group's callback with its members'
results and errors, and a takeover on PostgreSQL in the middle of a chain."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

from broker.admin import AdminClient
from broker.client import Client
from broker.errors import WorkFailed
from broker.gearman.workflows import Group, Step, chain, previous_results, submit
from broker.worker import Worker, WorkerJob
from tests.helpers import run_broker, wait_until

LEASE = "2"


def number(handle: str) -> int:
    return int(handle.rsplit(":", 1)[1])


def run(address: str, jobs: int, runs: list[str]) -> None:
    """A worker runs ``jobs`` jobs: each step returns what it ran after, joined, plus its
    own name; ``fail`` fails; ``collect`` lists what its group's members did."""

    def step(job: WorkerJob) -> bytes:
        runs.append(job.function)
        before = [state.value or b"" for state in previous_results(job)]
        return b"+".join([*before, job.function.encode()])

    def fail(job: WorkerJob) -> bytes:
        runs.append(job.function)
        raise WorkFailed("out of paper")

    def collect(job: WorkerJob) -> bytes:
        runs.append(job.function)
        told = [
            f"{s.status}:{(s.value or b'').decode()}{''.join(s.errors)}"
            for s in previous_results(job)
        ]
        return ",".join(told).encode()

    with Worker([address]) as worker:
        for name in ("a", "b", "c", "m"):
            worker.register(name, step)
        worker.register("fail", fail)
        worker.register("collect", collect)
        assert worker.work(max_jobs=jobs) == jobs


def test_a_chain_passes_results_and_survives_kill_9_between_steps(tmp_path: Path) -> None:
    store = ("--store", f"sqlite:{tmp_path / 'jobs.db'}")
    runs: list[str] = []
    with run_broker(*store) as broker:
        with Client([broker.address]) as client:
            flow = submit(client, chain(Step("a"), Step("b"), Step("c")))
        _, b, c = flow.jobs
        run(broker.address, 1, runs)
        with sqlite3.connect(tmp_path / "jobs.db") as db:  # a's end and b's release, stored
            query = "SELECT run_at FROM jobs WHERE number = ?"
            wait_until(lambda: db.execute(query, (number(b.handle),)).fetchone()[0] == 0)
        broker.process.kill()
    with run_broker(*store) as restarted:
        run(restarted.address, 2, runs)
        with AdminClient(restarted.address) as admin:
            ended = admin.result(c.handle)
            assert admin.result(b.handle).status == "successful"  # type: ignore[union-attr]
    assert runs == ["a", "b", "c"]  # each step once, in order
    assert ended is not None and ended.value == b"a+b+c"


def test_a_failed_step_stops_the_chain_and_a_group_callback_hears_of_every_member() -> None:
    runs: list[str] = []
    with run_broker() as broker, Client([broker.address]) as client:
        stopped = submit(client, chain(Step("a"), Step("fail"), Step("b")))
        grouped = submit(client, Group([Step("m"), Step("fail")], then=Step("collect")))
        run(broker.address, 5, runs)
        with AdminClient(broker.address) as admin:
            never = admin.result(stopped.jobs[2].handle)
            callback = admin.result(grouped.jobs[2].handle)
    assert sorted(runs) == ["a", "collect", "fail", "fail", "m"]  # b never ran
    assert never is not None and never.status == "failed"
    failed_step = stopped.jobs[1].handle
    assert never.errors == (f"chain stopped: {failed_step} (fail) failed: out of paper",)
    assert callback is not None and callback.value == b"successful:m,failed:out of paper"


def test_a_takeover_on_postgresql_in_the_middle_of_a_chain_loses_no_step(
    postgres_store: str,
) -> None:
    runs: list[str] = []
    lease = ("--store", postgres_store, "--store-lease", LEASE)
    with run_broker(*lease) as first, run_broker(*lease) as second:
        with Client([first.address]) as client:
            flow = submit(client, chain(Step("a"), Step("b"), Step("c")))
        run(first.address, 1, runs)
        b = flow.jobs[1]
        with psycopg.connect(postgres_store) as db:
            query = "SELECT run_at FROM spoolgear_jobs WHERE number = %s"
            wait_until(lambda: db.execute(query, (number(b.handle),)).fetchone()[0] == 0)
        first.process.kill()
        first.process.wait()
        wait_until(lambda: _queued(second.address, "b"), "the second broker took b over", 60)
        run(second.address, 2, runs)
    assert runs == ["a", "b", "c"]


def _queued(address: str, function: str) -> bool:
    with AdminClient(address) as admin:
        return any(row.name == function and row.total for row in admin.status())


def test_a_chain_waiting_when_its_broker_dies_is_taken_over_whole(postgres_store: str) -> None:
    runs: list[str] = []
    lease = ("--store", postgres_store, "--store-lease", LEASE)
    with run_broker(*lease) as first, run_broker(*lease) as second:
        with Client([first.address]) as client:
            submit(client, chain(Step("a"), Step("b")))
        first.process.kill()
        first.process.wait()
        wait_until(lambda: _queued(second.address, "a"), "the second broker took a over", 60)
        run(second.address, 2, runs)
    assert runs == ["a", "b"]
