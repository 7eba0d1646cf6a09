"""``manage.py gearman_submit_job TASK [DATA] [--args JSON] [--kwargs JSON] [--foreground]``.

django-gearman-commands' command: a background job by default; DATA, when
given, is the task's single string argument.
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from broker.errors import BrokerError
from django_jobs.sending.client import GearmanClient
from django_jobs.sending.serialization import PayloadError, to_json


def _json_option(text: str | None, kind: type, option: str) -> Any:
    if text is None:
        return kind()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{option} is not JSON: {exc}") from None
    if not isinstance(value, kind):
        raise CommandError(f"{option} must be a JSON {'array' if kind is list else 'object'}")
    return value


class Command(BaseCommand):
    help = "Submit a job to a task by name (background unless --foreground)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("task", help="the task name, as gearman_list_tasks shows it")
        parser.add_argument("data", nargs="?", help="a single string argument for the task")
        # Not dest "args": Django's run_from_argv takes that one for itself.
        parser.add_argument(
            "--args", dest="arguments", metavar="JSON", help="positional arguments, a JSON array"
        )
        parser.add_argument("--kwargs", metavar="JSON", help="keyword arguments, a JSON object")
        parser.add_argument(
            "--foreground", action="store_true", help="wait for the task and print its result"
        )
        parser.add_argument("--priority", choices=("high", "normal", "low"), default="normal")

    def handle(self, *args: Any, **options: Any) -> None:
        arguments = _json_option(options["arguments"], list, "--args")
        if options["data"] is not None:
            arguments.insert(0, options["data"])
        keywords = _json_option(options["kwargs"], dict, "--kwargs")
        try:
            with GearmanClient() as client:
                outcome = client.submit_job(
                    options["task"],
                    args=arguments,
                    kwargs=keywords,
                    background=not options["foreground"],
                    priority=options["priority"],
                )
        except (BrokerError, PayloadError) as exc:
            raise CommandError(f"job {options['task']} not done: {exc}") from None
        if options["foreground"]:
            self.stdout.write(json.dumps(to_json(outcome, "result")))
        else:
            self.stdout.write(f"queued {options['task']} as {outcome.handle} on {outcome.server}")
