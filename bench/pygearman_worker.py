"""pygearman 0.2.6 serving the benchmark's trivial task the way django-gearman did:
decode the ``{"args", "kwargs"}`` payload (JSON here, not pickle), call, encode the result.

Usage: ``python bench/pygearman_worker.py HOST:PORT`` (runs until killed).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import gearman  # type: ignore[import-untyped]

TASK_NAME = b"benchapp.trivial.noop"


def noop(number: int) -> int:
    return number


def run(worker: Any, job: Any) -> bytes:
    call = json.loads(job.data)
    return json.dumps(noop(*call["args"], **call["kwargs"])).encode()


if __name__ == "__main__":
    worker = gearman.GearmanWorker([sys.argv[1]])
    worker.set_client_id("pygearman-bench")
    worker.register_task(TASK_NAME, run)
    worker.work()
