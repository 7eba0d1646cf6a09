"""What ``gearman_server_info`` shows: each server's version, ping, tasks and workers.

Same three tables and column names as django-gearman-commands and jbox, so
eyes and scripts used to them still find their way, minus their bugs:
"Queued Jobs" counts jobs waiting (gearmand's total minus those running),
the filter narrows both tables, and a server that cannot be reached is a
row saying so instead of a crash. Works against spoolgear and gearmand. A
spoolgear broker sharing a PostgreSQL store with others adds a fourth table: what
each of them holds in the store.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from prettytable import PrettyTable

from broker.errors import BrokerError, ServerError
from broker.gearman.admin_client import AdminClient, BrokerInfo
from broker.gearman.client import Client
from broker.tls import TLSFiles

SERVER_COLUMNS = ("Gearman Server Host", "Gearman Server Version", "Ping Response Time")
TASK_COLUMNS = ("Task Name", "Total Workers", "Running Jobs", "Queued Jobs")
WORKER_COLUMNS = ("Worker IP", "Registered Tasks", "Client ID", "File Descriptor")
BROKER_COLUMNS = ("Broker ID", "Broker", "State", "Jobs in the Store", "Running")
SHARED_NOTE = (
    "The tables above count this broker's jobs; brokers sharing its PostgreSQL store "
    "each hold their own. The store holds, for all of them:"
)


@dataclass(frozen=True)
class TaskRow:
    name: str
    workers: int
    running: int
    queued: int


@dataclass(frozen=True)
class WorkerRow:
    ip: str
    tasks: tuple[str, ...]
    client_id: str
    fd: int


@dataclass
class ServerReport:
    host: str
    version: str = ""
    ping: float | None = None
    """Seconds an ECHO round trip took."""
    error: str = ""
    """Why the server could not be asked; empty when it answered."""
    tasks: list[TaskRow] = field(default_factory=list)
    workers: list[WorkerRow] = field(default_factory=list)
    brokers: list[BrokerInfo] = field(default_factory=list)
    """With a shared store: every broker's jobs there (``show brokers``)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def collect(host: str, *, timeout: float = 5.0, tls: TLSFiles | None = None) -> ServerReport:
    """Ask one server; connection failures and timeouts end up in ``error``."""
    report = ServerReport(host)
    try:
        with AdminClient(host, timeout=timeout, tls=tls) as admin:
            report.version = admin.version()
            report.tasks = sorted(
                (
                    TaskRow(s.name, s.workers, s.running, max(s.total - s.running, 0))
                    for s in admin.status()
                ),
                key=lambda row: row.name,
            )
            report.workers = sorted(
                (
                    WorkerRow(w.ip, w.functions, w.client_id, w.fd)
                    for w in admin.workers()
                    if w.functions
                ),
                key=lambda row: row.tasks,
            )
            report.brokers = _shared_store(admin)
        with Client([host], timeout=timeout, connect_timeout=timeout, tls=tls) as client:
            report.ping = client.ping(host)
    except (BrokerError, OSError) as exc:
        report.error = str(exc) or type(exc).__name__
    return report


def _shared_store(admin: AdminClient) -> list[BrokerInfo]:
    """The brokers sharing the server's store; none for gearmand or an unshared store."""
    try:
        return admin.show_brokers()
    except ServerError:
        return []


def apply_filter(report: ServerReport, text: str) -> ServerReport:
    """Keep tasks whose name contains ``text`` and workers with such a task."""
    if not text:
        return report
    report.tasks = [row for row in report.tasks if text in row.name]
    report.workers = [row for row in report.workers if any(text in t for t in row.tasks)]
    return report


def render(report: ServerReport) -> str:
    server = PrettyTable(SERVER_COLUMNS)
    if report.error:
        server.add_row([report.host, f"unreachable: {report.error}", "-"])
        return server.get_string()
    ping = f"{report.ping * 1000:.3f} ms" if report.ping is not None else "-"
    server.add_row([report.host, report.version, ping])
    tasks = PrettyTable(TASK_COLUMNS)
    tasks.align["Task Name"] = "l"
    for task in report.tasks:
        tasks.add_row([task.name, task.workers, task.running, task.queued])
    unserved = "".join(
        f"\n! {task.name}: {task.queued} queued, no worker registered"
        for task in report.tasks
        if task.queued and not task.workers
    )
    workers = PrettyTable(WORKER_COLUMNS)
    workers.align["Registered Tasks"] = "l"
    for worker in report.workers:
        workers.add_row([worker.ip, ",".join(worker.tasks), worker.client_id, worker.fd])
    tables = [server.get_string(), tasks.get_string() + unserved, workers.get_string()]
    if report.brokers:
        brokers = PrettyTable(BROKER_COLUMNS)
        brokers.align["Broker"] = "l"
        for broker in report.brokers:
            brokers.add_row([broker.id, broker.name, broker.state, broker.jobs, broker.running])
        tables.append(SHARED_NOTE + "\n" + brokers.get_string())
    return "\n\n".join(tables)
