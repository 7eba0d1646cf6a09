"""--spool-ingest: spool files written under uWSGI's locking protocol become durable jobs."""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from contextlib import AbstractContextManager
from pathlib import Path

from broker.admin import AdminClient
from broker.protocol.uwsgi import decode_spool, encode_spool
from tests.helpers import SPOOLGEAR, RunningBroker, burst_drain, run_broker, wait_until

SPOOL_NAME = "uwsgi_spoolfile_on_testhost_{}_1_2_3_4"


def write_spool_file(path: Path, pairs: list[tuple[bytes, bytes]], body: bytes = b"") -> None:
    """As uWSGI does: O_EXCL create, fcntl write lock, write, close."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    os.write(fd, encode_spool(pairs, body))
    os.close(fd)


def totals(broker: RunningBroker) -> dict[str, int]:
    with AdminClient(broker.address) as admin:
        return {status.name: status.total for status in admin.status()}


def drain(address: str, function: str) -> list[tuple[list[tuple[bytes, bytes]], bytes]]:
    """The vars and body of each job of ``function``, run once each."""
    return [decode_spool(data) for _, data in burst_drain(address, function)]


def ingesting(tmp_path: Path, spool: Path) -> AbstractContextManager[RunningBroker]:
    return run_broker(
        "--store",
        f"sqlite:{tmp_path / 'db'}",
        "--spool-ingest",
        str(spool),
        "--ingest-interval",
        "0.05",
    )


def test_files_become_jobs_and_are_deleted_once_stored(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    (spool / "3").mkdir(parents=True)
    write_spool_file(
        spool / SPOOL_NAME.format(1), [(b"ud_spool_func", b"f"), (b"n", b"1")], b"\x00binary body"
    )
    write_spool_file(
        spool / "3" / SPOOL_NAME.format(2),
        [(b"ud_spool_func", b"f"), (b"priority", b"3"), (b"n", b"2")],
    )
    with ingesting(tmp_path, spool) as broker:
        # Deleted once the store has them (status counts them a little sooner).
        wait_until(lambda: not [path for path in spool.rglob("*") if path.is_file()])
        assert totals(broker) == {"f": 2}
        seen = drain(broker.address, "f")
    # The priority-3 file runs first; the body and every var are kept.
    assert seen == [
        ([(b"ud_spool_func", b"f"), (b"priority", b"3"), (b"n", b"2")], b""),
        ([(b"ud_spool_func", b"f"), (b"n", b"1")], b"\x00binary body"),
    ]


def test_a_file_still_being_written_waits_for_its_writer(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    data = encode_spool([(b"ud_spool_func", b"f"), (b"payload", b"x" * 1000)])
    with ingesting(tmp_path, spool) as broker:
        fd = os.open(spool / SPOOL_NAME.format(1), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        fcntl.lockf(fd, fcntl.LOCK_EX)
        os.write(fd, data[:10])
        time.sleep(0.5)  # ten looks at the directory while the writer holds its lock
        assert totals(broker) == {}
        os.write(fd, data[10:])
        os.close(fd)
        wait_until(lambda: totals(broker) == {"f": 1})
        assert drain(broker.address, "f")[0][0][1] == (b"payload", b"x" * 1000)


def test_unusable_files_are_set_aside_and_foreign_ones_left_alone(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    torn = spool / SPOOL_NAME.format(1)
    torn.write_bytes(encode_spool([(b"k", b"value")])[:8])
    os.utime(torn, (1, 1))  # long dead writer
    write_spool_file(spool / SPOOL_NAME.format(2), [(b"priority", b"../../tmp")])
    (spool / "notes.txt").write_text("not a spool file")
    write_spool_file(spool / SPOOL_NAME.format(3), [(b"k", b"good")])
    with ingesting(tmp_path, spool) as broker:
        wait_until(lambda: totals(broker) == {"uwsgi_spooler": 1})
        rejected = spool / "spoolgear-rejected"
        wait_until(lambda: rejected.is_dir() and len(list(rejected.iterdir())) == 2)
    assert sorted(path.name for path in rejected.iterdir()) == [
        SPOOL_NAME.format(1),
        SPOOL_NAME.format(2),
    ]
    assert (spool / "notes.txt").read_text() == "not a spool file"


def test_ingest_needs_a_durable_store(tmp_path: Path) -> None:
    result = subprocess.run(
        [*SPOOLGEAR, "serve", "--port", "0", "--store", "memory:", "--spool-ingest", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "--spool-ingest needs a durable --store" in result.stderr
