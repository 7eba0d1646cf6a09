"""One ``gearman_worker`` process: serves the tasks of one worker module until told to stop.

SIGTERM or SIGINT: stop taking jobs, finish the running one and send its
result, then exit 0 (at once when idle). A second signal exits immediately
with 128 + the signal number; the broker requeues the abandoned background
job. ``max_jobs`` and ``max_memory`` make the process exit cleanly so that
supervisord starts a fresh one.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
from dataclasses import dataclass
from types import FrameType

from broker.gearman.cancel import DEFAULT_CANCEL_GRACE
from broker.gearman.steps import closing_stale_database_connections
from broker.gearman.worker import Worker
from django_jobs.conf import job_settings
from django_jobs.jobs.discovery import WorkerModule
from django_jobs.jobs.registry import RegisteredTask
from django_jobs.signals import worker_started, worker_stopping
from django_jobs.worker.runner import job_runner

log = logging.getLogger("django_jobs.worker")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def rss_bytes() -> int:
    """This process's resident memory now (Linux), else its peak."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class WorkerProcess:
    worker: WorkerModule
    tasks: list[RegisteredTask]
    max_jobs: int | None = None
    max_memory: int | None = None
    """Bytes of resident memory after which the process exits once its job is done."""
    timeout: float | None = None
    """Seconds a job may run before the server hands it to another worker (CAN_DO_TIMEOUT)."""
    prefetch: int | None = None
    """Jobs asked for ahead of the running one; None: as the jobs' pace allows
    (``broker.gearman.worker.AutoPrefetch``)."""
    cancel_grace: float | None = DEFAULT_CANCEL_GRACE
    """Seconds a cancelled job may run on before the process ends (``cancel.py``)."""
    servers: tuple[str, ...] | None = None
    """The brokers to take jobs from; None: ``GEARMAN_WORKER_SERVERS``."""
    reason: str = "signal"

    @property
    def client_id(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}:{self.worker.app}.{self.worker.worker}"

    def run(self) -> int:
        """Serve until stopped; returns the number of jobs done."""
        settings = job_settings()
        gearman = Worker(
            self.servers or settings.worker_servers,
            client_id=self.client_id,
            prefetch=self.prefetch,
            tls=settings.tls,
            cancel_grace=self.cancel_grace,
            steps=[closing_stale_database_connections],
        )
        self._gearman = gearman
        for task in self.tasks:
            gearman.register(
                settings.wire_name(task.name),
                job_runner(task, settings.serializer, self._after_job),
                timeout=self.timeout,
            )
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            worker_started.send(
                WorkerProcess, app=self.worker.app, worker=self.worker.worker, tasks=self.tasks
            )
            done = gearman.work(max_jobs=self.max_jobs)
            if self.max_jobs is not None and done >= self.max_jobs:
                self.reason = "max_jobs"
            log.info(
                "worker %s.%s stopping (%s) after %d jobs",
                self.worker.app,
                self.worker.worker,
                self.reason,
                done,
            )
            worker_stopping.send(
                WorkerProcess, app=self.worker.app, worker=self.worker.worker, reason=self.reason
            )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            gearman.close()
        return done

    def _after_job(self) -> None:
        if self.max_memory is None:
            return
        resident = rss_bytes()
        if resident > self.max_memory:
            log.warning(
                "resident memory %d MiB is over --max-memory %d MiB; exiting for a fresh process",
                resident >> 20,
                self.max_memory >> 20,
            )
            self.reason = "max_memory"
            self._gearman.stop()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_second_signal)
        log.info(
            "%s: finishing the running job, then exiting (send it again to stop now)",
            signal.Signals(signum).name,
        )
        self._gearman.stop()

    def _on_second_signal(self, signum: int, frame: FrameType | None) -> None:
        log.warning(
            "%s again: exiting now; the broker requeues a background job cut off here",
            signal.Signals(signum).name,
        )
        raise SystemExit(128 + signum)
