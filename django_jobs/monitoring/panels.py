"""What the admin dashboard shows of each server: ``gearman_server_info``'s report, plus
its schedules and its failed list, and the job history from the results it keeps, read
over the admin protocol."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from broker.errors import BrokerError
from broker.gearman.admin_client import (
    AdminClient,
    FailedInfo,
    FlowLimit,
    JobState,
    ScheduleInfo,
    WaitingJob,
)
from broker.tls import TLSFiles
from django_jobs.monitoring.server_info import ServerReport, collect

# Seconds the dashboard waits for a server before showing it as unreachable.
DASHBOARD_TIMEOUT = 3.0


@dataclass(frozen=True)
class ScheduleRow:
    function: str
    spec: str
    next_run: datetime
    fired: int


@dataclass
class ServerPanel:
    report: ServerReport
    schedules: list[ScheduleRow] = field(default_factory=list)
    failed: list[FailedInfo] = field(default_factory=list)
    limits: list[FlowLimit] = field(default_factory=list)
    waiting: list[WaitingJob] = field(default_factory=list)
    """Chains' next steps and groups' callbacks, with how far what they wait for got."""

    @property
    def paused(self) -> set[str]:
        """The function names paused by a rule of their own (a pattern pausing several
        shows in the flow-control table)."""
        return {limit.pattern for limit in self.limits if limit.paused}

    @property
    def ping_ms(self) -> float | None:
        ping = self.report.ping
        return None if ping is None else ping * 1000


def _row(schedule: ScheduleInfo) -> ScheduleRow:
    next_run = datetime.fromtimestamp(schedule.next_run, UTC)
    return ScheduleRow(schedule.function, schedule.spec, next_run, schedule.fired)


def server_panel(host: str, tls: TLSFiles | None) -> ServerPanel:
    panel = ServerPanel(collect(host, timeout=DASHBOARD_TIMEOUT, tls=tls))
    if panel.report.error:
        return panel
    try:
        with AdminClient(host, timeout=DASHBOARD_TIMEOUT, tls=tls) as admin:
            panel.schedules = [_row(schedule) for schedule in admin.show_schedules()]
            panel.failed = admin.show_failed()
            panel.limits = admin.limits()
            panel.waiting = admin.waiting()
    except (BrokerError, OSError) as exc:
        panel.report.error = str(exc) or type(exc).__name__
    return panel


@dataclass(frozen=True)
class HistoryRow:
    """One ended (or still live) background job, as the job history lists it."""

    server: str
    handle: str
    function: str
    status: str
    started: datetime | None
    seconds: float | None
    """From its first start to its end."""
    attempts: int
    error: str
    """The last failed attempt's first line."""


def history(
    hosts: list[str], tls: TLSFiles | None, function: str | None, status: str | None
) -> tuple[list[HistoryRow], list[str]]:
    """The jobs each broker keeps results of (newest first, per broker), and the brokers
    that could not be asked, with why."""
    rows, errors = [], []
    for host in hosts:
        try:
            with AdminClient(host, timeout=DASHBOARD_TIMEOUT, tls=tls) as admin:
                states = admin.show_results(function)
        except (BrokerError, OSError) as exc:
            errors.append(f"{host}: {exc}")
            continue
        rows += [_history_row(host, state) for state in states if status in (None, state.status)]
    return rows, errors


def _history_row(host: str, state: JobState) -> HistoryRow:
    started = None if state.started_at is None else datetime.fromtimestamp(state.started_at, UTC)
    ran = None
    if state.started_at is not None and state.finished_at is not None:
        ran = state.finished_at - state.started_at
    error = state.errors[-1].partition("\n")[0] if state.errors else ""
    return HistoryRow(
        host, state.handle, state.function, state.status, started, ran, state.attempts, error
    )


Control = Callable[[str, TLSFiles | None, str, str], str]
"""A dashboard control action: (broker, TLS, action, what it acts on) to what happened."""


def pause(host: str, tls: TLSFiles | None, action: str, pattern: str) -> str:
    """Pause or resume the functions ``pattern`` names on ``host``."""
    with AdminClient(host, timeout=DASHBOARD_TIMEOUT, tls=tls) as admin:
        if action == "pause":
            admin.pause(pattern)
        else:
            admin.resume(pattern)
    return f"{action}d"


def cancel_job(host: str, tls: TLSFiles | None, action: str, handle: str) -> str:
    """Cancel a queued or running job on ``host``."""
    with AdminClient(host, timeout=DASHBOARD_TIMEOUT, tls=tls) as admin:
        if not admin.cancel(handle):
            raise BrokerError("the broker has no such job (it ended, or never was)")
    return "cancelled"


def change_failed(host: str, tls: TLSFiles | None, action: str, handle: str) -> str:
    """Retry or drop one failed job (``handle``) on ``host``."""
    with AdminClient(host, timeout=DASHBOARD_TIMEOUT, tls=tls) as admin:
        if action == "retry":
            return f"{admin.retry_failed(handle)} job queued again"
        return f"{admin.drop_failed(handle)} job dropped"
