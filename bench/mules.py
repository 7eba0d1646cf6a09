"""Mule/farm messages: what keeping them out of the store buys one sender.

A sender submits MESSAGES background jobs to ``spoolgear.farm.bench`` one at a
time (as ``farm_msg`` does) while one worker drains them, against a broker
with the default ``--transient`` patterns (in memory) and one with
``--transient none`` (the same jobs fsync'd to SQLite before each answer).

    python bench/mules.py [--messages 5000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ports import free_port, wait_for_port

from broker.client import Client
from broker.worker import Worker, WorkerJob

FUNCTION = "spoolgear.farm.bench"


def run(messages: int, *broker_args: str) -> float:
    """Messages per second sent (each answered) while a worker drains them."""
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        broker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "broker.cli",
                "serve",
                "--port",
                str(port),
                "--store",
                f"sqlite:{Path(directory) / 'b.db'}",
                *broker_args,
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port)
            address = f"127.0.0.1:{port}"
            received = threading.Semaphore(0)

            def handle(job: WorkerJob) -> None:
                received.release()

            worker = Worker([address])
            worker.register(FUNCTION, handle)
            draining = threading.Thread(target=worker.work)
            draining.start()
            with Client([address]) as client:
                started = time.perf_counter()
                for number in range(messages):
                    client.submit_background(FUNCTION, b"message %d" % number)
                elapsed = time.perf_counter() - started
            for _ in range(messages):
                received.acquire(timeout=60)
            worker.stop()
            draining.join(10)
            worker.close()
        finally:
            broker.terminate()
            broker.wait(10)
    return messages / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    args = parser.parse_args(argv)
    transient = run(args.messages)
    durable = run(args.messages, "--transient", "none")
    print(f"one sender, {args.messages} messages, one worker draining")
    print(f"  transient (default --transient): {transient:8,.0f} msg/s")
    print(f"  durable (--transient none):      {durable:8,.0f} msg/s")
    print(f"  ratio: {transient / durable:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
