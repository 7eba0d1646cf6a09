"""End-to-end demo: a broker, a worker and a client, all real processes and sockets.

Run with ``make demo``. It starts ``spoolgear serve`` on a free port, serves a
``thumbnail`` task from a worker thread, then submits a foreground job (with
progress), a background job, and a job scheduled two seconds ahead, and shows
the broker's status along the way.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from broker.admin import AdminClient
from broker.banner import read_banner
from broker.client import Client
from broker.worker import Worker, WorkerJob

done = threading.Event()
finished: list[str] = []


def thumbnail(job: WorkerJob) -> str:
    """Pretend to resize an image, reporting progress as it goes."""
    steps = 4
    for step in range(1, steps + 1):
        time.sleep(0.1)
        job.send_status(step, steps)
    finished.append(job.data.decode())
    if len(finished) == 3:
        done.set()
    return f"thumb-of-{job.data.decode()}.png"


def show_status(admin: AdminClient, title: str) -> None:
    print(f"\n{title}")
    for row in admin.status():
        print(f"  {row.name:<10} queued={row.queued} running={row.running} workers={row.workers}")


def main() -> int:
    store = Path(tempfile.mkdtemp(prefix="spoolgear-demo-")) / "jobs.db"
    broker = subprocess.Popen(
        [sys.executable, "-m", "broker.cli", "serve", "--port", "0", "--store", f"sqlite:{store}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert broker.stdout is not None
    banner = broker.stdout.readline().strip()
    print(banner)
    address = read_banner(banner).gearman
    worker = Worker([address], client_id="demo-worker")
    worker.register("thumbnail", thumbnail)
    thread = threading.Thread(target=worker.work)
    try:
        with Client([address], timeout=30) as client, AdminClient(address) as admin:
            handle = client.submit_background("thumbnail", "holiday.jpg")
            at = time.time() + 2
            client.submit_background("thumbnail", "scheduled.jpg", at=at)
            print(f"queued holiday.jpg as {handle.handle}; scheduled.jpg for +2s")
            show_status(admin, "before any worker is running:")
            thread.start()

            def progress(numerator: int, denominator: int) -> None:
                print(f"  progress {numerator}/{denominator}")

            print("\nforeground job portrait.jpg:")
            result = client.submit("thumbnail", "portrait.jpg", on_status=progress)
            print(f"  result: {result.data.decode()}")
            if not done.wait(15):
                print("the scheduled job did not run in time", file=sys.stderr)
                return 1
            print(f"\nall jobs done, in this order: {', '.join(finished)}")
            show_status(admin, "after the run:")
    finally:
        worker.stop()
        if thread.is_alive():
            thread.join(10)
        worker.close()
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(store.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
