"""What every benchmarked task does: append when it started and when it was enqueued to the
marks file (``BENCH_MARKS``), one 16-byte write; ``O_APPEND`` keeps the writes of several
worker processes whole, so the bench counts finished tasks by the file's size."""

import os
import struct
import time

RECORD = struct.Struct("dd")
_marks: int | None = None


def record(stamp: float) -> None:
    global _marks
    started = time.time()
    if _marks is None:
        _marks = os.open(os.environ["BENCH_MARKS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_marks, RECORD.pack(started, stamp))
