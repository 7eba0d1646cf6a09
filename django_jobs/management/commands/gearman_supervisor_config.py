"""``manage.py gearman_supervisor_config``: supervisord programs for every worker pool."""

from __future__ import annotations

import os
import shlex
import sys
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from django_jobs.conf import job_settings
from django_jobs.jobs.discovery import discover
from django_jobs.worker.supervisor import (
    DEFAULT_LOG_DIR,
    DEFAULT_NUMPROCS,
    DEFAULT_STOPWAITSECS,
    Layout,
    Pool,
    render,
    tasks_queue_pool,
)


def _pairs(values: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep or not key:
            raise CommandError(f"{option} {value!r}: expected KEY=VALUE")
        pairs[key] = item
    return pairs


class Command(BaseCommand):
    help = (
        "Write supervisord programs for the project's worker pools: one per app, worker and "
        "queue, numprocs processes each, a group per app."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "-a",
            "--app",
            action="append",
            metavar="APP",
            help="only this app's workers (repeatable)",
        )
        parser.add_argument(
            "--numprocs",
            type=int,
            default=DEFAULT_NUMPROCS,
            metavar="N",
            help=f"processes per pool (default {DEFAULT_NUMPROCS})",
        )
        parser.add_argument(
            "--pool",
            action="append",
            default=[],
            metavar="APP.WORKER[.QUEUE]=N",
            help="processes for one worker or queue (0 leaves it out)",
        )
        parser.add_argument(
            "--tasks-queue",
            action="append",
            default=[],
            metavar="QUEUE[=N]",
            help="also a pool for this queue of Django's Tasks framework, N processes "
            "(default --numprocs; repeatable)",
        )
        parser.add_argument("--user", help="run the processes as this user")
        parser.add_argument(
            "--virtualenv",
            type=Path,
            metavar="PATH",
            help="the virtualenv to run from (default: the current one)",
        )
        parser.add_argument(
            "--project-dir",
            type=Path,
            metavar="DIR",
            help="where manage.py is (default: settings.BASE_DIR)",
        )
        parser.add_argument(
            "--log-dir",
            type=Path,
            default=Path(DEFAULT_LOG_DIR),
            metavar="DIR",
            help=f"log files (default {DEFAULT_LOG_DIR})",
        )
        parser.add_argument(
            "--stopwaitsecs",
            type=int,
            default=DEFAULT_STOPWAITSECS,
            metavar="S",
            help="seconds a stopping worker may take to finish its "
            f"job (default {DEFAULT_STOPWAITSECS}); make it "
            "longer than the longest job",
        )
        parser.add_argument(
            "--env",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="extra environment for every program (repeatable)",
        )
        parser.add_argument(
            "--broker",
            metavar="ARGS",
            nargs="?",
            const="",
            help="also run 'spoolgear serve ARGS' as a program, started first",
        )
        parser.add_argument(
            "--spooler",
            action="append",
            metavar="MODULE",
            help="also run 'spoolgear spooler --import MODULE' for uWSGI-style "
            "spool handlers (repeatable)",
        )
        parser.add_argument(
            "-o", "--output", type=Path, metavar="FILE", help="write here instead of stdout"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["numprocs"] < 1 or options["stopwaitsecs"] < 1:
            raise CommandError("--numprocs and --stopwaitsecs must be positive")
        python = self._python(options["virtualenv"])
        spoolgear = str(Path(python).parent / "spoolgear")
        jobs = job_settings()
        servers = [f"--server={server}" for server in jobs.worker_servers]
        tls = jobs.tls.client_options() if jobs.tls is not None else []
        layout = Layout(
            python=python,
            project_dir=self._project_dir(options["project_dir"]),
            settings_module=settings.SETTINGS_MODULE,
            log_dir=options["log_dir"].resolve(),
            user=options["user"],
            stopwaitsecs=options["stopwaitsecs"],
            environment=_pairs(options["env"], "--env"),
            broker_command=None
            if options["broker"] is None
            else [spoolgear, "serve", *shlex.split(options["broker"])],
            spooler_command=None
            if not options["spooler"]
            else [
                spoolgear,
                "spooler",
                *servers,
                *tls,
                *(f"--import={module}" for module in options["spooler"]),
            ],
        )
        tasks_pools = self._tasks_pools(options["tasks_queue"], options["numprocs"])
        pools = self._pools(
            options["app"], options["numprocs"], options["pool"], required=not tasks_pools
        )
        text = render(pools + tasks_pools, layout)
        if options["output"] is None:
            self.stdout.write(text, ending="")
        else:
            options["output"].write_text(text)
            self.stderr.write(f"wrote {options['output']}")

    @staticmethod
    def _python(virtualenv: Path | None) -> str:
        if virtualenv is None:  # absolute, but not resolved: a venv's python is a symlink
            return os.path.abspath(sys.executable)
        python = virtualenv.resolve() / "bin" / "python"
        if not python.exists():
            raise CommandError(f"--virtualenv {virtualenv}: no bin/python there")
        return str(python)

    @staticmethod
    def _project_dir(given: Path | None) -> Path:
        directory = given or Path(getattr(settings, "BASE_DIR", Path.cwd()))
        if not (directory / "manage.py").exists():
            raise CommandError(f"no manage.py in {directory}; pass --project-dir")
        return directory.resolve()

    @staticmethod
    def _tasks_pools(queues: list[str], numprocs: int) -> list[Pool]:
        pools: list[Pool] = []
        for given in queues:
            queue, _, count = given.partition("=")
            if count and not count.isdigit():
                raise CommandError(f"--tasks-queue {given}: N must be a whole number")
            pools.append(tasks_queue_pool(queue, int(count) if count else numprocs))
        return pools

    @staticmethod
    def _pools(
        apps: list[str] | None, numprocs: int, overrides: list[str], *, required: bool = True
    ) -> list[Pool]:
        counts = {}
        for key, value in _pairs(overrides, "--pool").items():
            if not value.isdigit():
                raise CommandError(f"--pool {key}={value}: N must be a whole number")
            counts[key] = int(value)
        pools = []
        for worker in discover():
            if apps and worker.app not in apps:
                continue
            for queue in sorted({task.queue for task in worker.tasks()}):
                name = f"{worker.app}.{worker.worker}"
                count = counts.pop(f"{name}.{queue}", counts.get(name, numprocs))
                pools.append(Pool(worker.app, worker.worker, queue, count))
        unknown = set(counts) - {f"{p.app}.{p.worker}" for p in pools}
        if unknown:
            raise CommandError(
                f"--pool: no worker or queue {', '.join(sorted(unknown))}; "
                "see manage.py gearman_list_tasks"
            )
        if not pools and required:
            raise CommandError(
                "no worker modules found" + (f" in {', '.join(apps)}" if apps else "")
            )
        return pools
