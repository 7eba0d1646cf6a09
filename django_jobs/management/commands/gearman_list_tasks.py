"""``manage.py gearman_list_tasks [--json]``: every app's workers, queues and task names."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand
from prettytable import PrettyTable

from django_jobs.conf import job_settings
from django_jobs.jobs.discovery import discover

COLUMNS = ("App", "Worker", "Queue", "Task Name", "Gearman Function")


class Command(BaseCommand):
    help = "List the Gearman tasks of every app's gearman_workers modules."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="one JSON document for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        settings = job_settings()
        rows = [
            [worker.app, worker.worker, task.queue, task.name, settings.wire_name(task.name)]
            for worker in discover()
            for task in worker.tasks()
        ]
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    [
                        dict(zip(("app", "worker", "queue", "task", "function"), row, strict=True))
                        for row in rows
                    ],
                    indent=2,
                )
            )
            return
        table = PrettyTable(COLUMNS)
        table.align = "l"
        table.add_rows(rows)
        self.stdout.write(table.get_string())
