"""The broker core's own cost per job, without sockets or a loop: submit, then grab and
complete, N background jobs through one client and one worker session.

Usage: ``python bench/core_dispatch.py [--jobs N] [--tree DIR]``. ``--tree`` measures the
core of another checkout (a ``git worktree`` of an older commit, say) in the same run, so
two versions compare on one machine at one moment (run each a few times: it is noisy).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path


def measure(jobs: int) -> tuple[float, float]:
    """Microseconds per job: (submit, grab + complete)."""
    broker_module = importlib.import_module("broker.core.broker")
    packets = importlib.import_module("broker.protocol.packets")
    kind, request = packets.PacketType, packets.MAGIC_REQ
    broker = broker_module.Broker(
        broker_module.BrokerSettings(handle_prefix=b"H:bench"),
        call_later=lambda *_: None,
        clock=time.time,
    )
    client = broker.connect(lambda data: None, 1, "client")
    worker = broker.connect(lambda data: None, 2, "worker")
    started = time.perf_counter()
    for _ in range(jobs):
        broker.handle_packet(
            client, packets.Packet(request, kind.SUBMIT_JOB_BG, (b"f", b"", b"data"))
        )
    broker.flush()
    submitted = time.perf_counter()
    broker.handle_packet(worker, packets.Packet(request, kind.CAN_DO, (b"f",)))
    for _ in range(jobs):
        broker.handle_packet(worker, packets.Packet(request, kind.GRAB_JOB_UNIQ, ()))
        handle = next(iter(worker.held))
        broker.handle_packet(worker, packets.Packet(request, kind.WORK_COMPLETE, (handle, b"")))
    broker.flush()
    done = time.perf_counter()
    return (submitted - started) / jobs * 1e6, (done - submitted) / jobs * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument(
        "--tree",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="the checkout whose broker/ to measure (default: this one)",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(args.tree.resolve()))
    submit, grab = measure(args.jobs)
    print(f"{args.tree}: submit {submit:.2f} us/job, grab + complete {grab:.2f} us/job")
    return 0


if __name__ == "__main__":
    sys.exit(main())
