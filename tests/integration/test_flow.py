"""Flow control on real brokers and workers: a global rate limit, a running limit seen from
the workers' own records, and a pause that outlives a restart (outcomes, not timings: a
rate gives a lower bound on the time only)."""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
import time
from pathlib import Path

from broker.admin import AdminClient
from broker.client import Client
from broker.worker import Worker, WorkerJob
from tests.helpers import SPOOLGEAR, queued, run_broker

Run = tuple[int, bytes, float, float]


def run_workers(address: str, function: str, jobs: int, seconds: float = 0.0) -> list[Run]:
    """Two workers (two connections) run ``jobs`` jobs of ``function`` between them, each
    taking ``seconds``; every run's (worker, payload, start, end), as the workers saw them."""
    runs: list[Run] = []
    lock = threading.Lock()
    workers = [Worker([address], client_id=f"w{n}") for n in range(2)]

    def serve(number: int) -> None:
        def run(job: WorkerJob) -> None:
            started = time.monotonic()
            time.sleep(seconds)
            with lock:
                runs.append((number, job.data, started, time.monotonic()))
                if len(runs) == jobs:
                    for each in workers:
                        each.stop()

        with workers[number] as worker:
            worker.register(function, run)
            worker.work()

    threads = [threading.Thread(target=serve, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(runs) == jobs
    return runs


def cli(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SPOOLGEAR, *args, "--server", address], capture_output=True, text=True, timeout=30
    )


def test_a_rate_limit_holds_across_workers() -> None:
    with run_broker("--limit", "tick=5/s") as broker:
        with Client([broker.address]) as client:
            for n in range(50):
                client.submit_background("tick", b"%d" % n)
        started = time.monotonic()
        runs = run_workers(broker.address, "tick", 50)
    # A bucket of one second's starts, then 5 a second: at least 9 s for 50 (a lower bound).
    assert max(end for *_, end in runs) - started >= 9.0
    assert {worker for worker, *_ in runs} == {0, 1}


def test_a_running_limit_of_one_never_has_two_running() -> None:
    with run_broker("--max-running", "report=1") as broker:
        with Client([broker.address]) as client:
            for n in range(6):
                client.submit_background("report", b"%d" % n)
        runs = run_workers(broker.address, "report", 6, seconds=0.2)
    assert_one_at_a_time(runs)


def assert_one_at_a_time(runs: list[Run]) -> None:
    """Each run started after the one before had ended."""
    ordered = sorted(runs, key=lambda run: run[2])
    for (*_, ended), (_, _, started, _) in itertools.pairwise(ordered):
        assert started >= ended


def test_a_per_key_limit_of_one_never_runs_two_with_one_key() -> None:
    with run_broker("--max-running-per-key", "import=1") as broker:
        with Client([broker.address]) as client:
            for n in range(12):
                client.submit_background("import", b"%d" % n, key=f"customer-{n % 3}")
        runs = run_workers(broker.address, "import", 12, seconds=0.2)
    for customer in range(3):
        assert_one_at_a_time([run for run in runs if int(run[1]) % 3 == customer])
    assert {worker for worker, *_ in runs} == {0, 1}  # other keys went ahead meanwhile


def test_a_pause_holds_jobs_across_a_restart_until_resumed(tmp_path: Path) -> None:
    store = ("--store", f"sqlite:{tmp_path / 'jobs.db'}")
    with run_broker(*store) as broker:
        paused = cli(broker.address, "pause", "import.*")
        assert paused.returncode == 0, paused.stderr
        assert "import.*" in paused.stdout and "paused" in paused.stdout
        with Client([broker.address]) as client:
            client.submit_background("import.csv", b"rows")
    with run_broker(*store) as restarted:
        shown = json.loads(cli(restarted.address, "limits", "--json").stdout)
        assert shown == [
            {
                "pattern": "import.*",
                "rate": None,
                "max_running": None,
                "paused": True,
                "running": 0,
                "queued": 1,
                "per_key": None,
            }
        ]
        status = cli(restarted.address, "status").stdout
        assert "import.csv" in status and "paused (import.*)" in status
        done: list[bytes] = []
        worker = Worker([restarted.address])
        worker.register("import.csv", lambda job: done.append(job.data))
        thread = threading.Thread(target=worker.work, kwargs={"max_jobs": 1})
        thread.start()
        time.sleep(1.0)  # it would have run by now if the pause did not hold
        assert done == [] and queued(restarted.address, "import.csv") == 1
        resumed = cli(restarted.address, "resume", "import.*")
        assert resumed.returncode == 0 and "no limits" in resumed.stdout
        thread.join(timeout=30)
        assert done == [b"rows"]
        worker.close()


def test_limits_are_changed_at_run_time_and_refused_clearly() -> None:
    with run_broker() as broker:
        set_both = cli(broker.address, "limit", "mail.*", "--rate", "100/m", "--running", "3")
        assert set_both.returncode == 0, set_both.stderr
        with AdminClient(broker.address) as admin:
            (rule,) = admin.limits()
        assert (rule.pattern, rule.rate, rule.max_running) == ("mail.*", "100/m", 3)
        wrong = cli(broker.address, "limit", "mail.*", "--rate", "lots")
        assert wrong.returncode == 1 and "is not a rate" in wrong.stderr
        nothing = cli(broker.address, "limit", "mail.*")
        assert nothing.returncode == 1 and "give --rate, --running or --per-key" in nothing.stderr
    bad = subprocess.run(
        [*SPOOLGEAR, "serve", "--limit", "mail=fast"], capture_output=True, text=True, timeout=30
    )
    assert bad.returncode != 0 and "--limit 'mail=fast'" in bad.stderr


def test_brokers_sharing_postgresql_read_the_rules_when_they_start(postgres_store: str) -> None:
    """Each broker enforces the rules for its own jobs, as it read them at its start or
    was told since."""
    with run_broker("--store", postgres_store) as first:
        assert cli(first.address, "pause", "import").returncode == 0
        with run_broker("--store", postgres_store) as second:
            with AdminClient(second.address) as admin:
                assert [(r.pattern, r.paused) for r in admin.limits()] == [("import", True)]
            assert cli(second.address, "resume", "import").returncode == 0
        with AdminClient(first.address) as admin:  # the first keeps its own until told
            assert [(r.pattern, r.paused) for r in admin.limits()] == [("import", True)]
