"""``manage.py gearman_server_info [filter] [--watch SECONDS] [--json]``."""

from __future__ import annotations

import json
import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_jobs.conf import job_settings
from django_jobs.monitoring.server_info import apply_filter, collect, render

CLEAR_SCREEN = "\x1b[H\x1b[2J"


class Command(BaseCommand):
    help = (
        "Show each Gearman server's version and ping, its tasks (workers, running, "
        "queued) and its workers, from GEARMAN_CLIENT_SERVERS."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "filter",
            nargs="?",
            default="",
            help="only tasks whose name contains this text, and their workers",
        )
        parser.add_argument(
            "--watch", type=float, metavar="SECONDS", help="redraw every SECONDS until interrupted"
        )
        parser.add_argument("--json", action="store_true", help="one JSON document for scripts")
        parser.add_argument(
            "--timeout",
            type=float,
            default=5.0,
            metavar="SECONDS",
            help="give up on a server after this long (default 5)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        for option in ("watch", "timeout"):
            if options[option] is not None and options[option] <= 0:
                raise CommandError(f"--{option} must be a positive number of seconds")
        try:
            while True:
                output = self._snapshot(options["filter"], options["json"], options["timeout"])
                if options["watch"] is None:
                    self.stdout.write(output)
                    return
                self.stdout.write(CLEAR_SCREEN + output)
                self.stdout.flush()
                time.sleep(options["watch"])
        except KeyboardInterrupt:
            return

    @staticmethod
    def _snapshot(text: str, as_json: bool, timeout: float) -> str:
        settings = job_settings()
        reports = [
            apply_filter(collect(host, timeout=timeout, tls=settings.tls), text)
            for host in settings.client_servers
        ]
        if as_json:
            return json.dumps([report.as_dict() for report in reports], indent=2)
        return "\n\n".join(render(report) for report in reports) + "\n"
