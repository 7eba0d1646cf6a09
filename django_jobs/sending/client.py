"""``GearmanClient``: submits Django tasks by name over ``GEARMAN_CLIENT_SERVERS``.

Calling conventions of django-gearman-jbox keep working: extra positional
arguments become the task's ``args`` and unknown keywords its ``kwargs``;
a task argument named like one of ``RESERVED`` goes through ``kwargs=``.
Unlike jbox, ``dispatch_background_task`` really queues a background job,
a falsy single argument is not dropped and ``kwargs`` may be omitted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone

from broker.errors import BrokerError, JobException
from broker.gearman.client import Client, JobHandle, JobRequest, JobResult
from broker.protocol.priorities import Priority
from django_jobs.conf import JobSettings, job_settings
from django_jobs.sending.serialization import dumps_call, loads_result
from django_jobs.sending.transactional import in_store_transaction, write_jobs

PRIORITIES = {"high": Priority.HIGH, "normal": Priority.NORMAL, "low": Priority.LOW}
MAX_DIGIT_PRIORITY = 999
RESERVED = (
    "name",
    "args",
    "kwargs",
    "background",
    "unique",
    "priority",
    "at",
    "timeout",
    "on_data",
    "on_status",
    "wait_until_complete",
    "poll_timeout",
    "max_retries",
)


class TaskError(JobException):
    """A foreground task raised in its worker; ``report`` is the worker's one-line account."""

    @property
    def report(self) -> str:
        return self.data.decode("utf-8", "replace")


@dataclass(frozen=True)
class Job:
    """One entry of a ``submit_jobs`` batch."""

    name: str
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    unique: str | bool | None = None
    """A string, or True for a digest of the payload (django-gearman's ``unique=True``)."""
    priority: str | int | Priority | None = None
    at: dt.datetime | dt.timedelta | float | None = None
    setup: Mapping[str, Any] = field(default_factory=dict)
    """``@task`` metadata (retry policy, attempt, buffer) carried beside the arguments."""
    rank: int | None = None
    """A background job's rank on spoolgear, instead of ``priority`` (``JobRequest.rank``)."""
    key: str = ""
    """A background job's concurrency key on spoolgear (``JobRequest.key``)."""


def job_priority(value: str | int | Priority | None) -> Priority:
    """A priority by name, or uwsgi_tasks' digits ("0"-"999", larger = less important),
    which all run as HIGH: before jobs without one, as uWSGI's priority directories do."""
    if value is None:
        return Priority.NORMAL
    if isinstance(value, Priority):
        return value
    if isinstance(value, str) and value.lower() in PRIORITIES:
        return PRIORITIES[value.lower()]
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if isinstance(text, str) and text.isdigit() and int(text) <= MAX_DIGIT_PRIORITY:
        return Priority.HIGH
    raise ValueError(
        f"priority must be one of {sorted(PRIORITIES)} or a number 0-"
        f"{MAX_DIGIT_PRIORITY} (uwsgi_tasks' digits), got {value!r}"
    )


def job_unique(unique: str | bool | None, payload: bytes) -> str:
    """The Gearman unique: as given, or with django-gearman's ``unique=True`` a digest of
    the payload, so that identical submissions coalesce."""
    if unique is True:
        return hashlib.sha256(payload).hexdigest()
    return unique or ""


def epoch(at: dt.datetime | dt.timedelta | float) -> float:
    """``at`` as epoch seconds: a number as it is, a timedelta from now, a datetime; a naive
    datetime is in Django's current time zone (with ``USE_TZ``; else the local time), the
    one rule for every ``at`` of django_jobs (client, ``@task``, retries)."""
    if isinstance(at, dt.timedelta):
        return time.time() + at.total_seconds()
    if isinstance(at, dt.datetime):
        if timezone.is_naive(at) and settings.USE_TZ:
            at = timezone.make_aware(at)
        return at.timestamp()
    return float(at)


def _failure(exc: BrokerError) -> BrokerError:
    if isinstance(exc, JobException):
        return TaskError(exc.handle, exc.data)
    return exc


class GearmanClient:
    """Not thread-safe: use one per thread (connections are kept open between calls)."""

    def __init__(
        self, servers: Sequence[str] | None = None, *, timeout: float | None = None
    ) -> None:
        self.settings: JobSettings = job_settings()
        self._client = Client(
            servers or self.settings.client_servers, timeout=timeout, tls=self.settings.tls
        )

    def __enter__(self) -> GearmanClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _request(self, job: Job, background: bool) -> JobRequest:
        at = None if job.at is None else epoch(job.at)
        if at is not None and not background:
            raise ValueError("only a background job can be delayed: pass background=True")
        payload = dumps_call(
            list(job.args), dict(job.kwargs), self.settings.serializer, dict(job.setup)
        )
        return JobRequest(
            self.settings.wire_name(job.name),
            payload,
            job_unique(job.unique, payload),
            job_priority(job.priority),
            background,
            at,
            rank=job.rank,
            key=job.key,
        )

    def submit_job(
        self,
        name: str,
        *arguments: Any,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        background: bool = False,
        unique: str | bool | None = None,
        priority: str | int | Priority | None = None,
        at: dt.datetime | dt.timedelta | float | None = None,
        timeout: float | None = None,
        on_data: Callable[[bytes], None] | None = None,
        on_status: Callable[[int, int], None] | None = None,
        wait_until_complete: bool = True,
        poll_timeout: float | None = None,
        max_retries: int = 0,
        **extra: Any,
    ) -> Any:
        """Run task ``name``; returns its result, or the ``JobHandle`` of a background job.

        ``priority``: "high", "normal" or "low" (or uwsgi_tasks' digits, run as
        high). ``unique``: a string, or True for a digest of the payload. ``at``: a
        datetime, a timedelta from now or epoch seconds (background jobs only). ``timeout`` bounds a
        foreground wait (``JobTimeout``). A task that raised comes back as
        ``TaskError``. jbox's ``wait_until_complete=False`` queues a background
        job, ``poll_timeout`` is ``timeout``; ``max_retries`` is accepted and
        unused: every configured server is tried in turn.
        """
        del max_retries
        job = Job(
            name, [*arguments, *(args or ())], {**(kwargs or {}), **extra}, unique, priority, at
        )
        background = background or not wait_until_complete
        request = self._request(job, background)
        if background and self._in_transaction([request]):
            return self._write_in_transaction([request])[0]
        if background:
            return self._client.submit_background(
                request.function,
                request.data,
                unique=request.unique,
                priority=request.priority,
                at=request.at,
            )
        try:
            result = self._client.submit(
                request.function,
                request.data,
                unique=request.unique,
                priority=request.priority,
                timeout=timeout if timeout is not None else poll_timeout,
                on_data=on_data,
                on_status=on_status,
            )
        except JobException as exc:
            raise _failure(exc) from None
        return loads_result(result.data, self.settings.serializer)

    def submit_jobs(
        self,
        jobs: Iterable[Job],
        *,
        background: bool = False,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Submit a batch in one write per server; results (or handles) in the jobs' order.

        A failed job raises its error once the whole batch is answered, or is
        returned in its place with ``return_exceptions=True``.
        """
        requests = [self._request(job, background) for job in jobs]
        if background and self._in_transaction(requests):
            return list(self._write_in_transaction(requests))
        outcomes: list[Any] = []
        for outcome in self._client.submit_many(requests, timeout=timeout):
            if isinstance(outcome, BrokerError):
                outcomes.append(_failure(outcome))
            elif isinstance(outcome, JobResult):
                outcomes.append(loads_result(outcome.data, self.settings.serializer))
            else:
                outcomes.append(outcome)
        if not return_exceptions:
            for outcome in outcomes:
                if isinstance(outcome, BrokerError):
                    raise outcome
        return outcomes

    def _in_transaction(self, requests: list[JobRequest]) -> bool:
        """Whether background ``requests`` are written in the open transaction of
        ``GEARMAN_STORE_DATABASE`` instead of sent to a broker (``transactional.py``)."""
        return bool(requests) and all(
            in_store_transaction(self.settings, request) for request in requests
        )

    def _write_in_transaction(self, requests: list[JobRequest]) -> list[JobHandle]:
        assert self.settings.store_database is not None
        return write_jobs(self.settings.store_database, requests)

    def dispatch_background_task(
        self,
        name: str,
        arg: Any = None,
        uniq: str | None = None,
        high_priority: bool = False,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> JobHandle:
        """jbox's helper, queuing a real background job (jbox sent a foreground one)."""
        arguments = [arg] if arg is not None else []
        handle: JobHandle = self.submit_job(
            name,
            *arguments,
            args=args,
            kwargs=kwargs,
            background=True,
            unique=uniq,
            priority="high" if high_priority else None,
        )
        return handle
