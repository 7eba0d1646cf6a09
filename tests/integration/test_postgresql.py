"""The PostgreSQL store when the database is in trouble: unreachable at start, restarted
under load, gone for longer than ``--store-retry``. A real Debian PostgreSQL cluster,
started by the tests, is stopped and started under a real broker."""

from __future__ import annotations

import subprocess
import time

import pytest

from broker.client import Client
from broker.errors import ServerError
from tests.helpers import SPOOLGEAR, burst_drain, free_port, pipelined_submitters, run_broker
from tests.postgres import Cluster


def test_an_unreachable_database_at_start_is_one_line_without_the_password() -> None:
    url = f"postgresql://app:s3cret@127.0.0.1:{free_port()}/jobs"
    result = subprocess.run(
        [*SPOOLGEAR, "serve", "--port", "0", "--store", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"spoolgear serve: cannot open the store postgresql://app@{url.split('@')[1]}:"
    )
    assert "s3cret" not in result.stderr
    assert "Connection refused" in lines[0]


def test_a_database_restart_under_load_loses_no_acknowledged_job(
    postgres_cluster: Cluster, postgres_store: str
) -> None:
    with run_broker("--store", postgres_store) as broker:
        with pipelined_submitters(broker.port) as acked:
            while sum(map(len, acked)) < 2000:
                time.sleep(0.01)
            postgres_cluster.stop("immediate")  # a crash: connections cut, nothing flushed cleanly
            held = sum(map(len, acked))
            time.sleep(1)
            assert sum(map(len, acked)) == held  # nothing acknowledged while it is down
            postgres_cluster.start()
            while sum(map(len, acked)) < held + 2000:
                time.sleep(0.01)
        acknowledged = {payload for client in acked for payload in client}
        ran = [data for _, data in burst_drain(broker.address, "f")]
    assert acknowledged <= set(ran)
    assert len(ran) == len(set(ran))
    assert "is unreachable, retrying for up to 30 s" in broker.log
    assert "is reachable again after" in broker.log


def test_an_outage_past_store_retry_refuses_what_waits_and_stops(
    postgres_cluster: Cluster, postgres_store: str
) -> None:
    with run_broker("--store", postgres_store, "--store-retry", "2") as broker:
        postgres_cluster.stop("fast")
        try:
            with Client([broker.address]) as client, pytest.raises(ServerError) as refused:
                client.submit_background("f", b"never acknowledged")
            assert broker.process.wait(timeout=30) == 1
        finally:
            postgres_cluster.start()
    assert "has been unreachable for 2 s (--store-retry)" in str(refused.value)
    assert "has been unreachable for 2 s (--store-retry)" in broker.log
