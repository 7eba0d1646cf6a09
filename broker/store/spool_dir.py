"""The spool-directory store: one uWSGI spool file per job (``spool:DIR``).

Each job is ``DIR/uwsgi_spoolfile_on_spoolgear_<number>`` in uWSGI's spool-file
format (docs/uwsgi.md): the job's fields as
vars, its payload as the body, ``at`` kept as a var and as the file's mtime, as
uWSGI does. Files are written under a temporary name with an fcntl lock held,
fsynced, then renamed into place, so a reader (this store, or a uWSGI spooler
sharing the directory) never sees a half-written file. The failed list and
schedules live in ``failed/`` and ``schedules/`` in the same format; a job that
is running has a marker in ``.running/``; flow rules are one line each in ``flow/``
(named by the pattern in hex: ``rate per running paused per_key``).

A file that cannot be decoded is moved to ``corrupt/`` and reported by name; a
file some other process holds locked, or a uWSGI task that is not a spoolgear
job, is left where it is and reported. Each file is written atomically and a
batch returns once all of it is on disk, but unlike SQLite a crash in the middle
of a batch can leave part of it applied (jobs then run at least once).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from broker.errors import ProtocolError
from broker.protocol.priorities import MAX_RANK, MIN_RANK
from broker.protocol.uwsgi import decode_spool, encode_spool
from broker.store import operations as ops
from broker.store.base import DEFAULT_SYNC, Store, StoredState, flow_rules

JOB_PREFIX = "uwsgi_spoolfile_on_spoolgear_"
UWSGI_PREFIX = "uwsgi_spoolfile_on_"


def _job_vars(job: ops.StoredJob) -> list[tuple[bytes, bytes]]:
    pairs = [
        (b"spoolgear_function", job.function),
        (b"spoolgear_unique", job.unique),
        (b"spoolgear_priority", b"%d" % job.priority),
        (b"spoolgear_seq", b"%d" % job.seq),
        (b"spoolgear_attempts", b"%d" % job.attempts),
    ]
    if job.reducer:
        pairs.append((b"spoolgear_reducer", job.reducer))
    if job.key:
        pairs.append((b"spoolgear_key", job.key))
    if job.after:
        pairs.append((b"spoolgear_after", job.after))
    if job.run_at:
        pairs.append((b"at", b"%d" % job.run_at))  # WAITING (-1): in the past for uWSGI
    return pairs


Vars = dict[bytes, bytes]
Record = TypeVar("Record")


def _priority(values: Vars) -> int:
    priority = int(values[b"spoolgear_priority"])
    if not MIN_RANK <= priority <= MAX_RANK:
        raise ValueError(f"priority {priority}")
    return priority


def _decode_job(path: Path, values: Vars, body: bytes, running: set[int]) -> ops.StoredJob:
    number = int(path.name.removeprefix(JOB_PREFIX))
    return ops.StoredJob(
        number,
        values[b"spoolgear_function"],
        values[b"spoolgear_unique"],
        body,
        _priority(values),
        float(values.get(b"at", b"0")),
        values.get(b"spoolgear_reducer", b""),
        int(values[b"spoolgear_attempts"]),
        number in running,
        int(values[b"spoolgear_seq"]),
        values.get(b"spoolgear_key", b""),
        values.get(b"spoolgear_after", b""),
    )


def _decode_schedule(path: Path, values: Vars, body: bytes) -> ops.StoredSchedule:
    return ops.StoredSchedule(
        int(path.name),
        values[b"spoolgear_function"],
        values[b"spoolgear_unique"],
        body,
        values[b"cron"].decode(),
        float(values.get(b"next_run", b"0")),
        int(values.get(b"fired", b"0")),
    )


def _decode_failed(path: Path, values: Vars, body: bytes) -> ops.FailedJob:
    return ops.FailedJob(
        int(path.name),
        values[b"spoolgear_function"],
        values[b"spoolgear_unique"],
        body,
        _priority(values),
        int(values[b"spoolgear_attempts"]),
        values[b"error"].decode(),
        float(values[b"failed_at"]),
    )


def _unhex(name: str) -> bytes | str:
    """A flow rule's pattern from its file name (the name as it is, to report, if not hex)."""
    try:
        return bytes.fromhex(name)
    except ValueError:
        return name


class SpoolStore(Store):
    durable = True

    def __init__(self, directory: Path, *, sync: str = DEFAULT_SYNC) -> None:
        self.directory = directory
        self.fsync = sync == "full"
        self.running = directory / ".running"
        self.failed = directory / "failed"
        self.schedules = directory / "schedules"
        self.staging = directory / ".tmp"
        self.corrupt = directory / "corrupt"
        self.flow = directory / "flow"
        for folder in (
            directory,
            self.running,
            self.failed,
            self.schedules,
            self.staging,
            self.flow,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        self._touched: set[Path] = set()

    def describe(self) -> str:
        return f"spool:{self.directory}"

    # ----------------------------------------------------------------- reading

    def load(self, window: int = 0) -> StoredState:
        state = StoredState()
        running = {int(p.name) for p in self.running.iterdir() if p.name.isdigit()}
        job_paths = []
        for path in sorted(self.directory.iterdir()):
            if not path.name.startswith(UWSGI_PREFIX) or not path.is_file():
                continue
            if path.name.startswith(JOB_PREFIX):
                job_paths.append(path)
            else:
                state.problems.append(
                    f"{path}: a uWSGI task, not a spoolgear job; left in "
                    "place (use --spool-ingest to take such files)"
                )
        state.jobs = self._records(
            job_paths,
            lambda path, values, body: _decode_job(path, values, body, running),
            state.problems,
        )
        state.jobs.sort(key=lambda job: (job.priority, job.seq))
        state.next_seq = max((job.seq for job in state.jobs), default=0) + 1
        state.schedules = self._records(
            sorted(self.schedules.iterdir()), _decode_schedule, state.problems
        )
        state.failed = self._records(sorted(self.failed.iterdir()), _decode_failed, state.problems)
        state.failed.sort(key=lambda failed: failed.failed_at)
        state.flow_rules = flow_rules(
            [
                [_unhex(path.name), *path.read_text().split()]
                for path in sorted(self.flow.iterdir())
            ],
            state.problems,
        )
        try:
            reserved = int((self.directory / "next_number").read_text())
        except (FileNotFoundError, ValueError):
            reserved = 1
        state.next_number = max(reserved, max((j.number for j in state.jobs), default=0) + 1)
        return state

    def _records(
        self, paths: list[Path], decode: Callable[[Path, Vars, bytes], Record], problems: list[str]
    ) -> list[Record]:
        """Decode each file; one that lacks a field or holds a bad value is set aside."""
        records = []
        for path in paths:
            fields = self._read(path, problems)
            if fields is None:
                continue
            try:
                records.append(decode(path, *fields))
            except (KeyError, ValueError) as exc:
                self._set_aside(path, f"missing or bad field {exc}", problems)
        return records

    def _read(self, path: Path, problems: list[str]) -> tuple[Vars, bytes] | None:
        """Decode one spool file under a non-blocking fcntl lock (uWSGI's protocol)."""
        try:
            with open(path, "rb") as file:
                try:
                    fcntl.lockf(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except OSError:
                    problems.append(f"{path}: locked by another process; left in place")
                    return None
                pairs, body = decode_spool(file.read())
        except FileNotFoundError:
            return None
        except ProtocolError as exc:
            self._set_aside(path, str(exc), problems)
            return None
        return dict(pairs), body

    def _set_aside(self, path: Path, reason: str, problems: list[str]) -> None:
        self.corrupt.mkdir(exist_ok=True)
        target = self.corrupt / path.name
        path.rename(target)
        problems.append(f"{path}: {reason}; moved to {target}")

    # ----------------------------------------------------------------- writing

    def write(self, batch: Sequence[ops.Operation]) -> None:
        self.sync_seconds = 0.0
        for op in ops.compact(batch):
            if isinstance(op, ops.AddJob):
                self._write_job(op.job)
                if op.job.running:
                    self._put(self.running / str(op.job.number), b"")
            elif isinstance(op, ops.MarkRunning):
                self._put(self.running / str(op.number), b"")
            elif isinstance(op, ops.Requeue):
                self._requeue(op)
            elif isinstance(op, ops.DeleteJob):
                self._remove_job(op.number)
            elif isinstance(op, ops.FailJob):
                self._write_failed(op.failed)
                self._remove_job(op.failed.number)
            elif isinstance(op, ops.DeleteFailed):
                self._remove(self.failed / str(op.number))
            elif isinstance(op, ops.AddSchedule):
                schedule = op.schedule
                self._put(
                    self.schedules / str(schedule.number),
                    encode_spool(
                        [
                            (b"spoolgear_function", schedule.function),
                            (b"spoolgear_unique", schedule.unique),
                            (b"cron", schedule.spec.encode()),
                            (b"next_run", repr(schedule.next_run).encode()),
                            (b"fired", b"%d" % schedule.fired),
                        ],
                        schedule.data,
                    ),
                )
            elif isinstance(op, ops.DeleteSchedule):
                self._remove(self.schedules / str(op.number))
            elif isinstance(op, ops.SetFlowRule):
                rule = op.rule
                line = (
                    f"{rule.rate} {rule.per!r} {rule.running} {int(rule.paused)} {rule.per_key}\n"
                )
                self._put(self.flow / rule.pattern.hex(), line.encode())
            elif isinstance(op, ops.DeleteFlowRule):
                self._remove(self.flow / op.pattern.hex())
            elif isinstance(op, ops.ReserveHandles):
                self._put(self.directory / "next_number", b"%d" % op.upto)
        for folder in self._touched:
            descriptor = os.open(folder, os.O_RDONLY)
            try:
                self._sync(descriptor)
            finally:
                os.close(descriptor)
        self._touched.clear()

    def _job_path(self, number: int) -> Path:
        return self.directory / f"{JOB_PREFIX}{number}"

    def _write_job(self, job: ops.StoredJob) -> None:
        self._put(
            self._job_path(job.number), encode_spool(_job_vars(job), job.data), mtime=job.run_at
        )

    def _remove_job(self, number: int) -> None:
        self._remove(self._job_path(number))
        self._remove(self.running / str(number))

    def _requeue(self, op: ops.Requeue) -> None:
        path = self._job_path(op.number)
        try:
            pairs, body = decode_spool(path.read_bytes())
        except (FileNotFoundError, ProtocolError):
            return  # already gone or set aside: nothing to requeue
        values = dict(pairs)
        values[b"spoolgear_attempts"] = b"%d" % op.attempts
        values[b"spoolgear_seq"] = b"%d" % op.seq
        if op.run_at:
            values[b"at"] = b"%d" % op.run_at
        else:
            values.pop(b"at", None)  # a requeued job runs now, at the tail of its queue
        self._put(path, encode_spool(values.items(), body), mtime=op.run_at)
        self._remove(self.running / str(op.number))

    def _write_failed(self, failed: ops.FailedJob) -> None:
        self._put(
            self.failed / str(failed.number),
            encode_spool(
                [
                    (b"spoolgear_function", failed.function),
                    (b"spoolgear_unique", failed.unique),
                    (b"spoolgear_priority", b"%d" % failed.priority),
                    (b"spoolgear_attempts", b"%d" % failed.attempts),
                    (b"error", failed.error.encode()),
                    (b"failed_at", repr(failed.failed_at).encode()),
                ],
                failed.data,
            ),
        )

    def _sync(self, descriptor: int) -> None:
        if not self.fsync:
            return
        started = time.perf_counter()
        os.fsync(descriptor)
        self.sync_seconds += time.perf_counter() - started

    def _put(self, path: Path, content: bytes, *, mtime: float = 0.0) -> None:
        """Write ``path`` atomically: locked temporary file, fsync, rename."""
        staged = self.staging / path.name
        with open(os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as file:
            fcntl.lockf(file, fcntl.LOCK_EX)
            file.write(content)  # a buffered file writes all of it (os.write may not)
            file.flush()
            if mtime > 0:
                os.utime(file.fileno(), (mtime, mtime))
            self._sync(file.fileno())
        os.rename(staged, path)
        self._touched.add(path.parent)

    def _remove(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            return
        self._touched.add(path.parent)

    def close(self) -> None:
        pass
