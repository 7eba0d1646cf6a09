"""supervisord programs for a project's worker pools (``manage.py gearman_supervisor_config``).

One program per (app, worker, queue), ``numprocs`` processes each, grouped per
app so that ``supervisorctl restart APP:*`` redeploys an app's pools. Each runs
``manage.py gearman_worker`` directly (no shell in between, so the signal
reaches Python) with ``stopsignal=TERM``, the worker's graceful stop: finish
the running job, send its result, exit 0. ``stopwaitsecs`` must exceed the
longest job, or supervisord kills it and the broker runs it again elsewhere.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

# Seconds supervisord waits after SIGTERM before SIGKILL: make it longer than any job.
DEFAULT_STOPWAITSECS = 600
DEFAULT_NUMPROCS = 2
DEFAULT_LOG_DIR = "/var/log/spoolgear"
BROKER_PROGRAM = "spoolgear-broker"
SPOOLER_PROGRAM = "spoolgear-spooler"


@dataclass(frozen=True)
class Pool:
    app: str
    worker: str
    queue: str
    numprocs: int

    @property
    def program(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{self.app}-{self.worker}-{self.queue}")

    def arguments(self) -> list[str]:
        return ["gearman_worker", "-a", self.app, "-n", self.worker, "-q", self.queue]


TASKS_GROUP = "tasks"


@dataclass(frozen=True)
class TasksQueuePool(Pool):
    """A queue of Django's Tasks framework (``gearman_worker --tasks-queue``), in the
    ``tasks`` group."""

    def arguments(self) -> list[str]:
        return ["gearman_worker", "--tasks-queue", self.queue]


def tasks_queue_pool(queue: str, numprocs: int) -> TasksQueuePool:
    return TasksQueuePool(TASKS_GROUP, "queue", queue, numprocs)


@dataclass(frozen=True)
class Layout:
    """Where things are on the host the configuration is for."""

    python: str
    project_dir: Path
    settings_module: str
    log_dir: Path
    user: str | None = None
    stopwaitsecs: int = DEFAULT_STOPWAITSECS
    environment: dict[str, str] = field(default_factory=dict)
    broker_command: list[str] | None = None
    """``spoolgear serve ...`` to run as a program too (started first), or None."""
    spooler_command: list[str] | None = None
    """``spoolgear spooler ...`` (uWSGI-style spool handlers) to run as a program, or None."""


def _environment(layout: Layout) -> str:
    values = {
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": layout.settings_module,
        **layout.environment,
    }
    # supervisord's syntax: KEY="value" pairs; % must be doubled (Python string expansion).
    return ",".join(f'{key}="{value.replace("%", "%%")}"' for key, value in values.items())


def _program(
    name: str, command: list[str], numprocs: int, layout: Layout, priority: int
) -> list[str]:
    lines = [
        f"[program:{name}]",
        f"command={shlex.join(command)}",
        f"directory={layout.project_dir}",
    ]
    if numprocs > 1:
        lines += ["process_name=%(program_name)s_%(process_num)02d", f"numprocs={numprocs}"]
    log_name = "%(program_name)s_%(process_num)02d" if numprocs > 1 else "%(program_name)s"
    if layout.user:
        lines.append(f"user={layout.user}")
    lines += [
        f"priority={priority}",
        "autostart=true",
        "autorestart=true",
        "startsecs=1",
        "stopsignal=TERM",
        f"stopwaitsecs={layout.stopwaitsecs}",
        f"environment={_environment(layout)}",
        "redirect_stderr=true",
        f"stdout_logfile={layout.log_dir / log_name}.log",
        "stdout_logfile_maxbytes=50MB",
        "stdout_logfile_backups=5",
    ]
    return lines


def render(pools: Iterable[Pool], layout: Layout) -> str:
    """The configuration text: the broker program (if any), the pools, a group per app."""
    sections: list[list[str]] = []
    if layout.broker_command is not None:
        sections.append(_program(BROKER_PROGRAM, layout.broker_command, 1, layout, 10))
    if layout.spooler_command is not None:
        sections.append(_program(SPOOLER_PROGRAM, layout.spooler_command, 1, layout, 100))
    groups: dict[str, list[str]] = {}
    manage = str(layout.project_dir / "manage.py")
    for pool in pools:
        if pool.numprocs < 1:
            continue
        sections.append(
            _program(
                pool.program, [layout.python, manage, *pool.arguments()], pool.numprocs, layout, 100
            )
        )
        groups.setdefault(pool.app, []).append(pool.program)
    for app, programs in groups.items():
        sections.append([f"[group:{app}]", f"programs={','.join(programs)}"])
    header = [
        "; Written by manage.py gearman_supervisor_config; include it from supervisord.conf",
        "; ([include] files = ...). supervisorctl restart APP:* redeploys an app's pools.",
        "",
    ]
    return "\n".join(header + ["\n".join(section) + "\n" for section in sections])
