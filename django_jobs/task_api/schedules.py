"""Timers and cron for tasks: uwsgi_tasks' ``@timer``, ``@timer_lazy``, ``@cron``, ``@cron_lazy``.

    @timer(seconds=60)
    def refresh_rates(signum): ...

    @cron(minute=0, hour=-2)          # uWSGI's fields: -1 any, -N every N
    def nightly_report(): ...

The schedule lives in the broker, not in one uWSGI process: each
``gearman_worker`` serving the task registers it when it starts, idempotently
by the task's name, so however many workers run, the broker keeps one schedule
and each firing is one background job run by one worker. Schedules survive
broker and worker restarts; firings missed while the broker was down run once
at its start (the broker's missed-firing policy). A lazy variant is registered
when called instead (``add_setup`` may change its timing first).

The function is called with one argument, the ``signal`` setup value (default
0), when it takes a positional parameter, as uWSGI's signal handlers are;
otherwise with none. Retries follow the ``@task`` setup keys.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

from broker.gearman.client import Client, JobHandle, schedule_fields, schedule_unique, uwsgi_cron
from broker.gearman.schedule_registration import register_in_background
from broker.uwsgi_compat.decorators import EVERY_PROCESS_TARGETS
from django_jobs.conf import job_settings
from django_jobs.jobs.discovery import check_served
from django_jobs.jobs.registry import RegisteredTask
from django_jobs.sending.serialization import Call, dumps_call
from django_jobs.signals import worker_started
from django_jobs.task_api.tasks import Task, TaskExecutor

log = logging.getLogger("django_jobs.schedules")
__all__ = ["ScheduledTask", "cron", "cron_lazy", "scheduled_tasks", "timer", "timer_lazy"]

TIMER_KEYS = ("seconds", "iterations")
CRON_KEYS = ("minute", "hour", "day", "month", "dayweek")

_scheduled: dict[str, ScheduledTask] = {}


def timing_fields(kind: str, setup: dict[str, Any]) -> tuple[str, ...]:
    """SUBMIT_JOB_SCHED fields for a "timer" or "cron" setup."""
    if kind == "timer":
        seconds, iterations = setup["seconds"], setup.get("iterations")
        if not isinstance(seconds, int) or seconds < 1:
            raise ValueError(f"a timer needs whole seconds >= 1, got {seconds!r}")
        return schedule_fields(every=seconds, iterations=iterations)
    return schedule_fields(cron=uwsgi_cron(*(setup.get(key, -1) for key in CRON_KEYS)))


class ScheduledTask(Task):
    """A task the broker runs on a schedule; calling it registers (arms) the schedule."""

    def __init__(
        self,
        function: Callable[..., Any],
        executor: TaskExecutor,
        setup: dict[str, Any],
        *,
        kind: str,
        lazy: bool,
    ) -> None:
        # Refuse a bad timing at import, not at the first worker start; a lazy timer
        # may get its seconds from add_setup() before it is armed.
        if not (lazy and kind == "timer" and not setup.get("seconds")):
            try:
                timing_fields(kind, setup)
            except ValueError as exc:
                raise ValueError(f"{function.__qualname__}: {exc}") from None
        target = setup.get("target", "")
        if not isinstance(target, str):
            raise ValueError(f"{function.__qualname__}: target must be a string, got {target!r}")
        super().__init__(function, executor, setup)
        self.kind = kind
        self.lazy = lazy
        self._takes_signum = any(
            parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
            for parameter in inspect.signature(function).parameters.values()
        )
        _scheduled[self.name] = self

    def add_setup(self, **setup: Any) -> None:
        """Change the setup (``seconds``, ``iterations``, cron fields...) before arming."""
        timing_fields(self.kind, {**self.setup.extra, **setup})
        self.setup = self.setup.updated(setup)

    def fields(self) -> tuple[str, ...]:
        """The SUBMIT_JOB_SCHED fields of the current setup."""
        return timing_fields(self.kind, self.setup.extra)

    @property
    def unique(self) -> str:
        """The schedule's identity on the broker (and the unique of its runs)."""
        return schedule_unique(job_settings().wire_name(self.name))

    def __call__(self, *args: Any, **kwargs: Any) -> JobHandle:  # type: ignore[override]
        """Arm the schedule on the client servers; ``.delay()`` queues one run instead."""
        if args or kwargs:
            raise TypeError(f"{self.name} is scheduled: it takes no arguments when armed")
        return self.arm(job_settings().client_servers)

    @property
    def every_process(self) -> bool:
        """uWSGI ran this in every worker, mule or spooler; here each firing runs once."""
        return str(self.setup.extra.get("target", "")) in EVERY_PROCESS_TARGETS

    def arm(self, servers: tuple[str, ...]) -> JobHandle:
        """Register the schedule (idempotent: the same one keeps its phase)."""
        try:
            fields = self.fields()
        except ValueError as exc:
            raise ValueError(
                f"{self.name} cannot be armed: {exc} (lazy timers take "
                "add_setup(seconds=...) before they are called)"
            ) from None
        check_served(self.registered)
        settings = job_settings()
        payload = dumps_call([], {}, settings.serializer, self.setup.to_wire())
        with Client(servers, tls=settings.tls) as client:
            return client.submit_schedule(
                settings.wire_name(self.name), payload, unique=self.unique, fields=fields
            )

    def run_job(self, received: Call) -> Any:
        if not received.args and self._takes_signum:
            received = received._replace(args=[self.setup.extra.get("signal", 0)])
        return super().run_job(received)


def scheduled_tasks() -> list[ScheduledTask]:
    return sorted(_scheduled.values(), key=lambda task: task.name)


def _arm_on_worker_start(sender: object, tasks: list[RegisteredTask], **_: Any) -> None:
    """A starting worker registers the non-lazy schedules of the tasks it serves, in the
    background so that an unreachable broker delays the schedules, not the jobs."""
    servers = job_settings().worker_servers
    register_in_background(
        [
            (scheduled.name, functools.partial(scheduled.arm, servers))
            for task in tasks
            if (scheduled := _scheduled.get(task.name)) and not scheduled.lazy
        ],
        log,
    )


worker_started.connect(_arm_on_worker_start, dispatch_uid="django_jobs.schedules")


Decorator = Callable[[Callable[..., Any]], ScheduledTask]


def timer(
    seconds: int = 0,
    iterations: int | None = None,
    *,
    lazy: bool = False,
    executor: TaskExecutor = TaskExecutor.AUTO,
    **setup: Any,
) -> Decorator:
    """Run every ``seconds`` seconds (``iterations`` times in all, None: forever)."""
    timing = {"seconds": seconds, "iterations": iterations}
    return lambda function: ScheduledTask(
        function, executor, {**setup, **timing}, kind="timer", lazy=lazy
    )


def cron(
    minute: int | str = -1,
    hour: int | str = -1,
    day: int | str = -1,
    month: int | str = -1,
    dayweek: int | str = -1,
    *,
    lazy: bool = False,
    executor: TaskExecutor = TaskExecutor.AUTO,
    **setup: Any,
) -> Decorator:
    """Run when the broker's local time matches: uWSGI's numbers (-1 any, -N every N) or
    cron text per field ("1-5", "*/10")."""
    timing = dict(zip(CRON_KEYS, (minute, hour, day, month, dayweek), strict=True))
    return lambda function: ScheduledTask(
        function, executor, {**setup, **timing}, kind="cron", lazy=lazy
    )


def timer_lazy(*args: Any, **kwargs: Any) -> Decorator:
    """``@timer`` armed by calling the task, not when a worker starts."""
    return timer(*args, lazy=True, **kwargs)


def cron_lazy(*args: Any, **kwargs: Any) -> Decorator:
    """``@cron`` armed by calling the task, not when a worker starts."""
    return cron(*args, lazy=True, **kwargs)
