"""Queuing a background job from Django code, through a client per thread and server list;
the broker's refusals of mule and farm messages become exceptions that say what to do."""

from __future__ import annotations

import threading

from broker.errors import BrokerError, ServerError
from broker.gearman.client import Client, JobHandle
from django_jobs.conf import job_settings
from django_jobs.sending.client import GearmanClient, Job


class QueueFull(BrokerError):
    """The broker refused a mule/farm message: the consumers are that far behind."""


class NoConsumer(BrokerError):
    """The broker refused a mule/farm message: no member has served it for a while (its
    ``--transient-grace``), so the message could never be delivered (uWSGI raises too)."""


_clients = threading.local()


def close_clients() -> None:
    """Close this thread's clients (the next job opens new ones): when a thread is done
    queuing, or after ``fork``."""
    for client in getattr(_clients, "by_servers", {}).values():
        client.close()
    _clients.by_servers = {}


def cancel(handle: JobHandle) -> bool:
    """Cancel a queued or running job (``Client.cancel``): it never runs (again), and a
    worker running it stops; False when its broker no longer has it."""
    with Client([handle.server], tls=job_settings().tls) as client:
        return client.cancel(handle)


def submit_background(job: Job, servers: tuple[str, ...]) -> JobHandle:
    """Queue ``job`` through this thread's client for ``servers``; a mule or farm queue
    that is full raises ``QueueFull``, one that nobody serves ``NoConsumer``."""
    if not hasattr(_clients, "by_servers"):
        _clients.by_servers = {}
    client: GearmanClient | None = _clients.by_servers.get(servers)
    if client is None:
        client = _clients.by_servers[servers] = GearmanClient(servers)
    try:
        handle: JobHandle = client.submit_jobs([job], background=True)[0]
    except ServerError as exc:
        if exc.code == "QUEUE_ERROR":
            raise QueueFull(
                f"{job.name} refused the job: its queue is full (the broker's "
                "--transient-max-queue or maxqueue); its consumers are behind, "
                "add workers or retry later"
            ) from None
        if exc.code == "NO_WORKERS":
            raise NoConsumer(
                f"{job.name} refused the job: no process serves it (start "
                "`manage.py gearman_worker --farm NAME` or `--mule ID`)"
            ) from None
        raise
    return handle
