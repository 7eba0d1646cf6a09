"""``manage.py gearman_worker -a APP -n WORKER [-q QUEUE ...] [--farm NAME ...] [--mule ID]
[--tasks-queue QUEUE ...]``: serve one worker module's tasks, the messages of the farms and
mule it joins, and the queues of Django's Tasks framework it is given."""

from __future__ import annotations

import logging
import os
from argparse import ArgumentParser
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError

from broker.gearman.cancel import DEFAULT_CANCEL_GRACE
from broker.uwsgi_compat.api import MULE_ID_VARIABLE
from django_jobs.jobs.discovery import WorkerModule, import_worker, worker_modules
from django_jobs.jobs.registry import RegisteredTask
from django_jobs.task_api.mules import member_tasks
from django_jobs.worker.serve import WorkerProcess

log = logging.getLogger("django_jobs.worker")
VERBOSITY_LEVELS = {0: logging.WARNING, 1: logging.INFO}


def show_logs(verbosity: int) -> None:
    """Send ``django_jobs`` logs to stderr, at the level ``-v`` asks for, unless the
    project's LOGGING already gives that logger handlers or a level."""
    logger = logging.getLogger("django_jobs")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(VERBOSITY_LEVELS.get(verbosity, logging.DEBUG))


class Command(BaseCommand):
    help = (
        "Serve the Gearman tasks of APP/gearman_workers/WORKER.py until SIGTERM/SIGINT "
        "(the running job finishes first)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "-a", "--app-name", metavar="APP", help="the app's label (or dotted name)"
        )
        parser.add_argument(
            "-n",
            "--worker-name",
            metavar="WORKER",
            help="the module in the app's gearman_workers package",
        )
        parser.add_argument(
            "--farm",
            action="append",
            default=[],
            metavar="NAME",
            help="also take the messages of farm NAME (repeatable; -a/-n optional then)",
        )
        parser.add_argument(
            "--mule",
            type=int,
            metavar="ID",
            help="also be mule ID: its messages and those for any mule",
        )
        parser.add_argument(
            "--tasks-queue",
            action="append",
            default=[],
            metavar="QUEUE",
            help="also run Django Tasks framework tasks of this queue (repeatable; -a/-n "
            "optional then)",
        )
        parser.add_argument(
            "--tasks-backend",
            default="default",
            metavar="ALIAS",
            help="the TASKS backend whose queues --tasks-queue names (default: default)",
        )
        parser.add_argument(
            "-q",
            "--queue-name",
            action="append",
            metavar="QUEUE",
            help="serve only this queue's tasks (repeatable; default: all)",
        )
        parser.add_argument(
            "--max-jobs",
            type=int,
            metavar="N",
            help="exit 0 after N jobs (supervisord starts a fresh process)",
        )
        parser.add_argument(
            "--max-memory",
            type=int,
            metavar="MB",
            help="exit 0 after a job leaves the process above MB of RSS",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            metavar="SECONDS",
            help="a job held longer goes to another worker (CAN_DO_TIMEOUT)",
        )
        parser.add_argument(
            "--cancel-grace",
            type=float,
            default=DEFAULT_CANCEL_GRACE,
            metavar="SECONDS",
            help="a cancelled job that has not stopped at a progress report or check "
            "(current_job().check_cancelled()) this long after its cancel ends the process, "
            "which supervisord starts again (default %(default)s)",
        )
        parser.add_argument(
            "--prefetch",
            type=int,
            default=None,
            metavar="N",
            help="ask for up to N jobs ahead: faster for short jobs, but a long job holds "
            "the others back (default: as many as the recent jobs run in 2 ms, at most 16; "
            "one while they take longer, and with --timeout)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        show_logs(options["verbosity"])
        if (options["prefetch"] or 1) > 1 and options["timeout"] is not None:
            raise CommandError(
                "--timeout counts from when a job is handed over, so prefetched "
                "jobs would time out while waiting: use --prefetch 1 with it"
            )
        for name in ("max_jobs", "max_memory", "timeout", "prefetch", "cancel_grace"):
            if options[name] is not None and options[name] <= 0:
                raise CommandError(f"--{name.replace('_', '-')} must be positive")
        members = self._members(options["farm"], options["mule"])
        if options["mule"] is not None:  # for mule_id() / uwsgi.mule_id()
            os.environ[MULE_ID_VARIABLE] = str(options["mule"])
        tasks_queues = options["tasks_queue"]
        alone = options["app_name"] is None and options["worker_name"] is None
        if alone and members:
            worker = WorkerModule(
                "farm",
                "+".join(options["farm"]) or f"mule{options['mule']}",
                "django_jobs.task_api.mules",
            )
            tasks = members
        elif alone and tasks_queues:
            worker = WorkerModule("tasks", "+".join(tasks_queues), "django_jobs.tasks_framework")
            tasks = []
        else:
            worker = self._worker(options["app_name"], options["worker_name"])
            tasks = self._tasks(worker, options["queue_name"]) + members
        process = WorkerProcess(
            worker,
            tasks,
            max_jobs=options["max_jobs"],
            max_memory=options["max_memory"] << 20 if options["max_memory"] else None,
            timeout=options["timeout"],
            prefetch=options["prefetch"],
            cancel_grace=options["cancel_grace"],
        )
        if tasks_queues:
            self._add_tasks_queues(process, options["tasks_backend"], tasks_queues)
        for task in process.tasks:
            log.info("serving %s (queue %s)", task.name, task.queue)
        process.run()

    @staticmethod
    def _add_tasks_queues(process: WorkerProcess, alias: str, queues: list[str]) -> None:
        """Serve these queues of the Tasks framework's backend ``alias``, from its brokers
        (imported here: projects without the framework never need it)."""
        from django_jobs.tasks_framework.worker import serve_queues

        try:
            serve_queues(process, alias, queues)
        except ValueError as exc:
            raise CommandError(str(exc)) from None

    @staticmethod
    def _members(farms: list[str], mule_id: int | None) -> list[RegisteredTask]:
        if mule_id is not None and mule_id < 1:
            raise CommandError("--mule must be a positive id")
        try:
            return member_tasks(farms, mule_id)
        except ValueError as exc:
            raise CommandError(f"--farm: {exc}") from None

    @staticmethod
    def _tasks(worker: WorkerModule, queue_names: list[str] | None) -> list[RegisteredTask]:
        import_worker(worker)
        tasks = worker.tasks()
        queues = sorted({task.queue for task in tasks})
        if queue_names:
            unknown = set(queue_names) - set(queues)
            if unknown:
                raise CommandError(
                    f"{worker.module} has no queue {', '.join(sorted(unknown))}; "
                    f"its queues: {', '.join(queues) or 'none'}"
                )
            tasks = [task for task in tasks if task.queue in queue_names]
        if not tasks:
            raise CommandError(f"{worker.module} defines no @gearman_task functions")
        return tasks

    @staticmethod
    def _worker(app_name: str | None, worker_name: str | None) -> WorkerModule:
        if app_name is None or worker_name is None:
            raise CommandError("give -a APP and -n WORKER (or only --farm NAME / --mule ID)")
        configs = {config.label: config for config in apps.get_app_configs()}
        configs.update({config.name: config for config in apps.get_app_configs()})
        config = configs.get(app_name)
        if config is None:
            with_workers = sorted(c.label for c in apps.get_app_configs() if worker_modules(c))
            raise CommandError(
                f"no installed app {app_name!r}; apps with workers: "
                f"{', '.join(with_workers) or 'none'}"
            )
        workers = {worker.worker: worker for worker in worker_modules(config)}
        if worker_name not in workers:
            raise CommandError(
                f"app {config.label!r} has no worker {worker_name!r}; its workers: "
                f"{', '.join(workers) or f'none (add {config.name}.gearman_workers.<name>)'}"
            )
        return workers[worker_name]
