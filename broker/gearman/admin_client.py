"""A small admin-protocol client that returns typed records (for CLIs and Django commands)."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass

from broker.addresses import DEFAULT_SERVER
from broker.errors import ServerError
from broker.gearman.connection import Wire
from broker.tls import TLSFiles


@dataclass(frozen=True, slots=True)
class FunctionStatus:
    name: str
    total: int
    running: int
    workers: int

    @property
    def queued(self) -> int:
        """gearmand's TOTAL includes running jobs; this is the part still waiting."""
        return self.total - self.running

    @property
    def unserved(self) -> bool:
        """Jobs wait and no worker can take them: worth an operator's look."""
        return self.queued > 0 and self.workers == 0


@dataclass(frozen=True, slots=True)
class PriorityStatus:
    name: str
    high: int
    normal: int
    low: int
    workers: int


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    fd: int
    ip: str
    client_id: str
    functions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class JobInfo:
    handle: str
    retries: int
    ignored: bool
    background: bool


@dataclass(frozen=True, slots=True)
class FailedInfo:
    handle: str
    function: str
    attempts: int
    failed_at: int
    error: str


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    """A broker sharing a PostgreSQL store (``show brokers``); id 0 counts the jobs
    applications wrote that no broker has taken over yet."""

    id: int
    name: str
    state: str
    jobs: int
    running: int


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    handle: str
    function: str
    unique: str
    spec: str
    next_run: int
    fired: int


@dataclass(frozen=True, slots=True)
class FlowLimit:
    """A flow rule in force (``show limits``), with what its functions do now."""

    pattern: str
    rate: str | None
    """``100/s``, ``5/m``, ``1000/h``; None for no rate limit."""
    max_running: int | None
    paused: bool
    running: int
    queued: int
    per_key: int | None
    """At most this many running with one concurrency key; None for no such limit."""


@dataclass(frozen=True, slots=True)
class WaitingJob:
    """A job that waits for others to end (``show waiting``): a chain's next step, a
    group's callback."""

    handle: str
    function: str
    mode: str
    ended: int
    of: int


@dataclass(frozen=True, slots=True)
class JobState:
    """A background job's state, or how it ended (``show result``): kept by the broker
    for ``--keep-results`` after the job ended."""

    handle: str
    function: str
    status: str
    """``queued``, ``running``, ``successful``, ``failed`` or ``cancelled``."""
    enqueued_at: float | None
    started_at: float | None
    """When its first attempt started (epoch seconds)."""
    last_started_at: float | None
    finished_at: float | None
    attempts: int
    workers: tuple[str, ...]
    """The worker of each attempt (its client id, else its address), in order."""
    errors: tuple[str, ...]
    """Why each failed attempt failed, in order."""
    value: bytes | None
    """WORK_COMPLETE's data; None when it was larger than the broker keeps."""
    value_size: int
    data: bytes | None
    """The job's payload; None when it was larger than the broker keeps."""
    data_size: int
    after: tuple[str, ...] = ()
    """A job that runs after others (chains and groups), while the broker holds it: their
    handles."""
    after_mode: str = ""
    """``chain`` (each of those had to succeed) or ``group`` (they had to end)."""
    waiting: int = 0
    """How many of those it still waits for."""

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


def _job_state(line: str) -> JobState:
    fields = json.loads(line)
    for name in ("value", "data"):
        encoded = fields[name]
        fields[name] = None if encoded is None else base64.b64decode(encoded)
    fields["workers"], fields["errors"] = tuple(fields["workers"]), tuple(fields["errors"])
    fields["after"] = tuple(fields.get("after", ()))
    return JobState(**fields)


class AdminClient:
    """Talks to one server's admin port. Every call raises ``ServerError`` on ``ERR``."""

    def __init__(
        self, server: str = DEFAULT_SERVER, *, timeout: float = 10.0, tls: TLSFiles | None = None
    ) -> None:
        self.server = server
        self.timeout = timeout
        self.tls = tls.client_context() if tls is not None else None
        self._wire: Wire | None = None

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._wire is not None:
            self._wire.close()
            self._wire = None

    def _send(self, command: str) -> float:
        if self._wire is None:
            self._wire = Wire(self.server, connect_timeout=self.timeout, tls=self.tls)
        self._wire.send(command.encode() + b"\n")
        return time.monotonic() + self.timeout

    def _line(self, command: str) -> str:
        deadline = self._send(command)
        assert self._wire is not None
        line = self._wire.read_line(deadline).rstrip(b"\r").decode("utf-8", "replace")
        if line.startswith("ERR "):
            code, _, text = line[4:].partition(" ")
            raise ServerError(code, text.replace("+", " "))
        return line

    def _table(self, command: str) -> list[list[str]]:
        deadline = self._send(command)
        assert self._wire is not None
        rows: list[list[str]] = []
        while True:
            line = self._wire.read_line(deadline).decode("utf-8", "replace")
            if line == ".":
                return rows
            if line.startswith("ERR "):
                code, _, text = line[4:].rstrip("\r").partition(" ")
                raise ServerError(code, text.replace("+", " "))
            rows.append(line.split("\t"))

    def status(self) -> list[FunctionStatus]:
        return [
            FunctionStatus(name, int(total), int(running), int(workers))
            for name, total, running, workers in self._table("status")
        ]

    def priority_status(self) -> list[PriorityStatus]:
        return [
            PriorityStatus(name, int(high), int(normal), int(low), int(workers))
            for name, high, normal, low, workers in self._table("prioritystatus")
        ]

    def workers(self) -> list[WorkerInfo]:
        records = []
        for (line,) in self._table("workers"):
            head, _, functions = line.partition(" :")
            fd, ip, client_id = head.split(" ", 2)
            records.append(WorkerInfo(int(fd), ip, client_id, tuple(functions.split())))
        return records

    def show_jobs(self) -> list[JobInfo]:
        return [
            JobInfo(handle, int(retries), ignored == "1", queued == "1")
            for handle, retries, ignored, queued in self._table("show jobs")
        ]

    def show_unique_jobs(self) -> list[str]:
        return [row[0] for row in self._table("show unique jobs")]

    def show_schedules(self) -> list[ScheduleInfo]:
        return [
            ScheduleInfo(handle, function, unique, spec, int(next_run), int(fired))
            for handle, function, unique, spec, next_run, fired in self._table("show schedules")
        ]

    def show_failed(self) -> list[FailedInfo]:
        return [
            FailedInfo(handle, function, int(attempts), int(failed_at), error)
            for handle, function, attempts, failed_at, error in self._table("show failed")
        ]

    def show_brokers(self) -> list[BrokerInfo]:
        """The brokers sharing this broker's store (``ServerError`` if it shares none)."""
        return [
            BrokerInfo(int(number), name, state, int(jobs), int(running))
            for number, name, state, jobs, running in self._table("show brokers")
        ]

    def result(self, handle: str) -> JobState | None:
        """The job's state or kept result; None for a handle the broker does not know
        (never given, or its result expired)."""
        try:
            rows = self._table(f"show result {handle}")
        except ServerError as exc:
            if exc.code == "UNKNOWN_JOB":
                return None
            raise
        return _job_state(rows[0][0])

    def show_results(self, function: str | None = None) -> list[JobState]:
        """The results this broker keeps (of ``function``), newest first, at most 500,
        without their values and payloads (``result`` gives them)."""
        command = "show results" if function is None else f"show results {function}"
        return [_job_state(row[0]) for row in self._table(command)]

    def retry_failed(self, handle: str = "all") -> int:
        """Queue failed jobs again (``all`` or one handle); returns how many."""
        return int(self._line(f"retry failed {handle}").removeprefix("OK "))

    def drop_failed(self, handle: str = "all") -> int:
        return int(self._line(f"drop failed {handle}").removeprefix("OK "))

    def version(self) -> str:
        return self._line("version").removeprefix("OK ")

    def getpid(self) -> int:
        return int(self._line("getpid").removeprefix("OK "))

    def verbose(self) -> str:
        return self._line("verbose").removeprefix("OK ")

    def limits(self) -> list[FlowLimit]:
        return [
            FlowLimit(
                pattern,
                None if rate == "-" else rate,
                None if max_running == "-" else int(max_running),
                paused == "1",
                int(running),
                int(queued),
                None if per_key == "-" else int(per_key),
            )
            for pattern, rate, max_running, paused, running, queued, per_key in self._table(
                "show limits"
            )
        ]

    def waiting(self) -> list[WaitingJob]:
        return [
            WaitingJob(handle, function, mode, int(ended), int(of))
            for handle, function, mode, ended, of in self._table("show waiting")
        ]

    def pause(self, pattern: str) -> None:
        """Hand out no job of the functions ``pattern`` names until ``resume``."""
        self._line(f"pause {pattern}")

    def resume(self, pattern: str) -> None:
        self._line(f"resume {pattern}")

    def limit(
        self,
        pattern: str,
        *,
        rate: str | None = None,
        running: str | None = None,
        per_key: str | None = None,
    ) -> None:
        """Set (``100/s``, ``3``) or clear (``none``) the rate, running or per-key limit
        of the functions ``pattern`` names; a limit not given stays as it is."""
        given = {"rate": rate, "running": running, "per-key": per_key}
        if all(value is None for value in given.values()):
            raise ValueError("give a rate, a running limit or a per-key limit")
        for what, value in given.items():
            if value is not None:
                self._line(f"limit {pattern} {what} {value}")

    def cancel_job(self, handle: str) -> None:
        self._line(f"cancel job {handle}")

    def cancel(self, handle: str) -> bool:
        """``cancel job``, False when the server has no such job (it ended, or never was):
        a queued job never runs, a running one's result is discarded and a spoolgear
        worker running it is told to stop; either way it is never retried."""
        try:
            self.cancel_job(handle)
        except ServerError as exc:
            if exc.code == "UNKNOWN_JOB":
                return False
            raise
        return True

    def maxqueue(self, function: str, *limits: int) -> None:
        self._line(" ".join(["maxqueue", function, *map(str, limits)]))

    def create_function(self, function: str) -> None:
        self._line(f"create function {function}")

    def drop_function(self, function: str) -> None:
        self._line(f"drop function {function}")

    def shutdown(self, *, graceful: bool = False) -> None:
        self._line("shutdown graceful" if graceful else "shutdown")
