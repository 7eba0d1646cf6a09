"""``manage.py check`` warnings for task code that would run differently than it reads.

Each one names a call that would succeed while its job never runs, or a uWSGI
option with no equivalent, so a developer hears of it before production does.
They also print when ``gearman_worker`` starts.
"""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Warning, register


@register("django_jobs")
def check_tasks(app_configs: Any = None, **_: Any) -> list[CheckMessage]:
    from django_jobs.jobs.discovery import unserved_message, unserved_tasks
    from django_jobs.task_api.schedules import scheduled_tasks

    messages: list[CheckMessage] = [
        Warning(
            unserved_message(task.name, task.module),
            obj=task.name,
            id="django_jobs.W001",
            hint="calling it raises ImproperlyConfigured instead of queuing a job",
        )
        for task in unserved_tasks()
    ]
    messages += [
        Warning(
            f"{task.name} has target={task.setup.extra['target']!r}: uWSGI ran it in every "
            "such process; the broker runs each firing once, on one worker",
            obj=task.name,
            id="django_jobs.W002",
            hint="drop target=..., or have the task reach every process itself",
        )
        for task in scheduled_tasks()
        if task.every_process
    ]
    return messages
