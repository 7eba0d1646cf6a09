"""Third-party Gearman libraries unchanged against spoolgear: PHP, Perl and pygearman."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from broker.admin import AdminClient
from broker.client import Client
from broker.errors import JobFailed
from broker.worker import Worker, WorkerJob
from tests.helpers import IN_CI, RunningBroker, require_peer

PEERS = Path(__file__).parent / "peers"


def php() -> str:
    binary = require_peer("php")
    probe = subprocess.run([binary, "-r", "exit(class_exists('GearmanClient') ? 0 : 1);"])
    if probe.returncode != 0:
        message = "php-gearman is not installed (make peers installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return binary


def perl() -> str:
    binary = require_peer("perl")
    if subprocess.run([binary, "-MGearman::Client", "-e", "1"]).returncode != 0:
        message = "libgearman-client-perl is not installed (make peers installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return binary


def serve_in_thread(address: str) -> tuple[Worker, threading.Thread]:
    worker = Worker([address])
    worker.register("reverse", lambda job: job.data[::-1])

    def chunks(job: WorkerJob) -> bytes:
        job.send_status(1, 2)
        job.send_data(b"a")
        job.send_data(b"b")
        return b"c"

    def explode(job: WorkerJob) -> bytes:
        raise RuntimeError("boom")

    worker.register("chunks", chunks)
    worker.register("explode", explode)
    worker.register("fail", explode)
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    return worker, thread


def stop(worker: Worker, thread: threading.Thread) -> None:
    worker.stop()
    thread.join(10)
    worker.close()


PHP_EXPECTED = (
    "normal:olleh\nhigh:hgih\nlow:wol\nchunks:abc\nexception:yes\nbackground:handle\nstatus:4\n"
)


def run_client_script(binary: str, script: str, broker: RunningBroker) -> str:
    """Run a peer's client script while a spoolgear worker serves its functions."""
    worker, thread = serve_in_thread(broker.address)
    try:
        result = subprocess.run(
            [binary, str(PEERS / script), str(broker.port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        stop(worker, thread)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_php_client_against_spoolgear_worker(broker: RunningBroker) -> None:
    assert run_client_script(php(), "client.php", broker) == PHP_EXPECTED


def test_php_worker_and_php_client(broker: RunningBroker) -> None:
    binary = php()
    worker = subprocess.Popen([binary, str(PEERS / "worker.php"), str(broker.port), "6"])
    try:
        result = subprocess.run(
            [binary, str(PEERS / "client.php"), str(broker.port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.stdout == PHP_EXPECTED, result.stderr
        assert worker.wait(20) == 0
    finally:
        worker.kill()
        worker.wait()


def test_php_worker_serves_spoolgear_client(broker: RunningBroker) -> None:
    binary = php()
    worker = subprocess.Popen([binary, str(PEERS / "worker.php"), str(broker.port), "2"])
    try:
        statuses: list[tuple[int, int]] = []
        with Client([broker.address], timeout=20) as client:
            assert client.submit("reverse", "php").data == b"php"[::-1]
            result = client.submit("chunks", on_status=lambda n, d: statuses.append((n, d)))
        assert (result.chunks, result.data, statuses) == ((b"a", b"b"), b"c", [(1, 2)])
        assert worker.wait(20) == 0
    finally:
        worker.kill()
        worker.wait()


def test_perl_client_against_spoolgear_worker(broker: RunningBroker) -> None:
    assert run_client_script(perl(), "client.pl", broker) == (
        "normal:lrep\nunique:euqinu\nfail:undef\nbackground:handle\n"
    )


def test_perl_worker_serves_spoolgear_client(broker: RunningBroker) -> None:
    binary = perl()
    worker = subprocess.Popen([binary, str(PEERS / "worker.pl"), str(broker.port), "2"])
    try:
        with Client([broker.address], timeout=20) as client:
            assert client.submit("reverse", "camel").data == b"lemac"
            with AdminClient(broker.address) as admin:
                (perl_worker,) = [w for w in admin.workers() if w.functions]
            assert len(perl_worker.client_id) == 30  # Gearman::Worker's random id
            with pytest.raises(JobFailed):
                client.submit("fail")
    finally:
        worker.kill()
        worker.wait()


def test_pygearman_client_worker_and_admin(broker: RunningBroker) -> None:
    gearman = pytest.importorskip("gearman") if not IN_CI else __import__("gearman")
    worker = gearman.GearmanWorker([broker.address])
    worker.register_task(b"reverse", lambda w, job: job.data[::-1])
    stopping = threading.Event()
    worker.after_poll = lambda activity: not stopping.is_set()
    thread = threading.Thread(target=worker.work, kwargs={"poll_timeout": 0.2}, daemon=True)
    thread.start()
    client = gearman.GearmanClient([broker.address])
    admin = gearman.GearmanAdminClient([broker.address])
    try:
        request = client.submit_job("reverse", b"pygearman", poll_timeout=10)
        assert (request.state, request.result) == ("COMPLETE", b"namraegyp")
        background = client.submit_job("later", b"x", background=True, poll_timeout=10)
        assert background.state == "CREATED"
        status = client.get_job_status(background, poll_timeout=10)
        assert (status.status["known"], status.status["running"]) == (True, False)
        assert admin.get_version().startswith("OK 1.1.20")
        assert admin.ping_server() < 5
        tasks = {row["task"]: row for row in admin.get_status()}
        assert tasks["later"]["queued"] == 1 and tasks["reverse"]["workers"] == 1
        assert any(w["tasks"] == ("reverse",) for w in admin.get_workers())
        assert len(admin.get_jobs()) == 1
    finally:
        stopping.set()
        thread.join(10)
        for manager in (client, admin, worker):
            manager.shutdown()
