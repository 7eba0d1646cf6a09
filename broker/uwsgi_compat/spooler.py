"""``spoolgear spooler``: a worker that runs uWSGI-style spool handlers.

Handlers come from the modules given with ``--import``:

- functions decorated with ``broker.uwsgi_compat.decorators`` (``spool``, ``spoolraw``,
  ``spoolforever``) serve the jobs named by ``ud_spool_func``;
- uwsgi_tasks-style tasks (module-level objects with a ``function``) serve the
  jobs whose ``function_name`` is ``module.function``;
- a ``spooler(env)`` callable, module-level or assigned to ``uwsgi.spooler``,
  serves plain dicts, under the broker's ``--spool-function``;
- ``@timer``, ``@rbtimer`` and ``@cron`` functions (``broker.uwsgi_compat.decorators``)
  are registered on the broker as schedules when the spooler starts, and their
  firings run here.

Handler modules import uWSGI's own names unchanged (``import uwsgi``, ``from
uwsgidecorators import spool``): ``broker.uwsgi_compat.process`` provides them in
this process only, and sets Django up when ``DJANGO_SETTINGS_MODULE`` is set.

A handler gets what the uWSGI spooler would pass (docs/uwsgi.md,
"Running the handlers") and its return code is applied as there, with the flaws
fixed: SPOOL_OK (-2) ends the job; SPOOL_RETRY (-1), any other code and an
exception run it again after a doubling delay, at most ``--attempts`` times in
all, and then the job goes to the broker's failed list with the reason;
SPOOL_IGNORE (0) hands it to the next handler of that name, and a job nobody
takes counts as a failed attempt. A retry is a new background job carrying the
attempt number in the ``spoolgear_attempt`` var (hidden from handlers); the
current one completes once the retry is stored, so nothing is lost in between.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from broker.addresses import DEFAULT_SERVER
from broker.errors import BrokerError, ConfigurationError
from broker.gearman.client import Client, JobHandle, schedule_unique
from broker.gearman.retries import backoff_delay, retry_or_give_up
from broker.gearman.schedule_registration import register_in_background
from broker.gearman.steps import (
    TimeLimitExceeded,
    closing_stale_database_connections,
    time_limit,
    working_directory,
)
from broker.gearman.worker import Worker, WorkerJob
from broker.options import check_options, option
from broker.protocol.spool_request import DEFAULT_QUEUE, DEFAULT_SPOOL_FUNCTION, QUEUE_SEPARATOR
from broker.protocol.uwsgi import decode_spool, encode_spool
from broker.tls import TLSFiles
from broker.uwsgi_compat import api as uwsgi_api
from broker.uwsgi_compat.decorators import (
    SPOOL_IGNORE,
    SPOOL_OK,
    SPOOL_RETRY,
    PickleRefused,
    Schedule,
    SpoolFunction,
    schedules,
    unpickle,
)
from broker.uwsgi_compat.decorators import spool_functions as decorated_functions
from broker.uwsgi_compat.prefork import serve_forked
from broker.uwsgi_compat.process import prepare

log = logging.getLogger("spoolgear.spooler")

ATTEMPT_VAR = b"spoolgear_attempt"
DEFAULT_ATTEMPTS = 5
DEFAULT_RETRY_DELAY = 1.0
DEFAULT_MAX_RETRY_DELAY = 300.0
# uWSGI reruns a @spoolforever task on every scan, every --spooler-frequency (30 s) when idle.
DEFAULT_FOREVER_INTERVAL = 30.0

Handler = Callable[[dict[Any, Any]], Any]


def _positive_or_none(value: float | None) -> bool:
    return value is None or value > 0


class SpoolFailed(BrokerError):
    """A spool job that ran out of attempts (or can never run); the text says why."""


@dataclass
class SpoolerSettings:
    """Every ``spoolgear spooler`` option, declared once: the parser and its checks come
    from here (uWSGI's spooler options are accepted under their names too)."""

    servers: Sequence[str] = option(
        (DEFAULT_SERVER,),
        "broker address (repeatable)",
        flag="--server",
        aliases=("-s",),
        metavar="HOST:PORT",
        repeat=True,
    )
    queues: Sequence[str] = option(
        (DEFAULT_QUEUE,),
        "serve jobs sent to this named spooler (its name or directory; repeatable); "
        f"{DEFAULT_QUEUE!r} is the unnamed one",
        flag="--queue",
        aliases=("-q",),
        metavar="SPOOLER",
        repeat=True,
    )
    """The named spoolers served: each spooler serves exactly these, so one can be
    dedicated to a spooler name or directory."""
    attempts: int = option(
        DEFAULT_ATTEMPTS,
        "runs of a job that keeps failing before it goes to the failed list",
        metavar="N",
        check=lambda attempts: attempts >= 1,
        rule="must be at least 1",
    )
    retry_delay: float = option(
        DEFAULT_RETRY_DELAY,
        "seconds before the first retry, doubled for each next one",
        metavar="SECONDS",
        check=lambda delay: delay >= 0,
        rule="must be 0 or more",
    )
    max_retry_delay: float = option(
        DEFAULT_MAX_RETRY_DELAY, "longest wait between two attempts", metavar="SECONDS"
    )
    forever_interval: float = option(
        DEFAULT_FOREVER_INTERVAL,
        "seconds between two runs of a @spoolforever job",
        metavar="SECONDS",
        check=lambda seconds: seconds > 0,
        rule="must be positive",
    )
    allow_pickle: bool = option(
        False,
        "unpickle arguments of jobs from the real uwsgidecorators or uwsgi_tasks: UNSAFE "
        "unless every producer is trusted",
    )
    spool_function: str = option(
        DEFAULT_SPOOL_FUNCTION,
        "function under which plain dicts reach spooler(env) handlers (the broker's "
        "--spool-function)",
    )
    processes: int = option(
        1,
        "N spooler processes under one master (uWSGI's spooler-processes)",
        aliases=("--spooler-processes",),
        metavar="N",
        check=lambda processes: processes >= 1,
        rule="must be at least 1",
    )
    max_tasks: int | None = option(
        None,
        "replace a spooler process after N jobs (uWSGI's spooler-max-tasks)",
        aliases=("--spooler-max-tasks",),
        metavar="N",
        parse=int,
        check=_positive_or_none,
        rule="must be positive",
    )
    harakiri: float | None = option(
        None,
        "cut off a job running longer (a failed attempt) and replace its process "
        "(uWSGI's spooler-harakiri)",
        aliases=("--spooler-harakiri",),
        metavar="SECONDS",
        parse=float,
        check=_positive_or_none,
        rule="must be positive",
    )
    chdir: str | None = option(
        None,
        "run each job in this directory (uWSGI's spooler-chdir)",
        aliases=("--spooler-chdir",),
        metavar="DIR",
        parse=str,
        check=lambda directory: directory is None or os.path.isdir(directory),
        rule="must be an existing directory",
    )
    cancel_grace: float | None = option(
        None,
        "a cancelled job still running this long after its cancel (it did not stop at a "
        "progress report or check) ends its process, which the master starts again "
        "(default: it runs to its end, its result discarded)",
        metavar="SECONDS",
        parse=float,
        check=_positive_or_none,
        rule="must be positive",
    )
    client_id: str | None = None
    tls: TLSFiles | None = None
    """TLS to the brokers (``--ssl``)."""

    def __post_init__(self) -> None:
        check_options(self)
        if self.max_retry_delay < self.retry_delay:
            raise ConfigurationError("--max-retry-delay must be at least --retry-delay")
        if not self.queues:
            raise ConfigurationError(
                f"--queue: name at least one queue ({DEFAULT_QUEUE!r} is the unnamed one)"
            )

    @property
    def forked(self) -> bool:
        """Whether a master keeps the spooler processes running (as uWSGI's does)."""
        return (
            self.processes > 1
            or self.max_tasks is not None
            or self.harakiri is not None
            or self.cancel_grace is not None
        )


@dataclass
class Handlers:
    """Handler chains by job function (without the queue), in import order."""

    chains: dict[str, list[Handler]] = field(default_factory=dict)
    schedules: list[Schedule] = field(default_factory=list)
    """``@timer``/``@cron`` functions: registered at start, their firings run here."""

    def add(self, name: str, handler: Handler) -> None:
        self.chains.setdefault(name, []).append(handler)


def import_module(spec: str) -> ModuleType:
    """A module by dotted name, or a ``.py`` file by path (as uWSGI's --spooler-import)."""
    if spec.endswith(".py"):
        name = spec.rsplit("/", 1)[-1][:-3]
        loader_spec = importlib.util.spec_from_file_location(name, spec)
        if loader_spec is None or loader_spec.loader is None:
            raise ConfigurationError(f"--import {spec}: cannot load that file")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        loader_spec.loader.exec_module(module)
        return module
    return importlib.import_module(spec)


def collect_handlers(modules: Sequence[ModuleType], settings: SpoolerSettings) -> Handlers:
    handlers = Handlers()
    wanted = {module.__name__ for module in modules}
    for decorated in decorated_functions.values():
        if decorated.function.__module__ in wanted:
            handlers.add(decorated.name, _decorated_runner(decorated, settings.allow_pickle))
    for module in modules:
        for name, value in vars(module).items():
            function = getattr(value, "function", None)
            if (
                not callable(function)
                or isinstance(value, SpoolFunction)
                or getattr(function, "__module__", None) != module.__name__
            ):
                continue
            served_by = getattr(value, "served_by", None)
            if served_by:
                raise ConfigurationError(
                    f"{module.__name__}.{name} is not a spool handler: {served_by}"
                )
            handlers.add(
                f"{module.__name__}.{function.__name__}",
                _uwsgi_task_runner(function, settings.allow_pickle),
            )
        raw = getattr(module, "spooler", None)
        if callable(raw):
            handlers.add(settings.spool_function, raw)
    for assigned in uwsgi_api.assigned_spoolers.values():  # ``uwsgi.spooler = f``
        if assigned not in handlers.chains.get(settings.spool_function, []):
            handlers.add(settings.spool_function, assigned)
    for schedule in schedules.values():
        if schedule.function.__module__ in wanted:
            handlers.schedules.append(schedule)
    return handlers


def _decorated_runner(decorated: SpoolFunction, allow_pickle: bool) -> Handler:
    return lambda env: decorated.run(env, allow_pickle)


def _uwsgi_task_runner(function: Callable[..., Any], allow_pickle: bool) -> Handler:
    """Run a uwsgi_tasks spool message: pickled args/kwargs (or a pickled body) and setup."""

    def run(env: dict[Any, Any]) -> int:
        if "body" in env:
            arguments = unpickle(env["body"], allow_pickle)
            args, kwargs = arguments["args"], arguments["kwargs"]
        else:
            args = unpickle(env[b"args"], allow_pickle) if b"args" in env else ()
            kwargs = unpickle(env[b"kwargs"], allow_pickle) if b"kwargs" in env else {}
        setup = unpickle(env[b"setup"], allow_pickle) if b"setup" in env else {}
        result = function(*args, **kwargs)
        if setup.get("spooler_return"):
            return int(result)
        return SPOOL_RETRY if result == SPOOL_RETRY else SPOOL_OK

    return run


class Spooler:
    """Serves spool jobs with ``handlers`` until stopped."""

    def __init__(self, handlers: Handlers, settings: SpoolerSettings, *, django: bool) -> None:
        """``django``: Django is set up in this process, so its database connections are
        looked after around each job."""
        self.handlers = handlers
        self.settings = settings
        self.client = Client(settings.servers, tls=settings.tls)
        self.worker = Worker(
            settings.servers,
            client_id=settings.client_id,
            tls=settings.tls,
            cancel_grace=settings.cancel_grace,
            steps=[
                *([closing_stale_database_connections] if django else []),
                self._in_chdir,
            ],
        )
        for name in handlers.chains:
            for function_name in self.function_names(name):
                self.worker.register(function_name, self.run_job)
        for schedule in handlers.schedules:
            self.worker.register(schedule.name, functools.partial(self.run_timer, schedule))

    def function_names(self, name: str) -> list[str]:
        separator = QUEUE_SEPARATOR.decode()
        return [
            name if queue == DEFAULT_QUEUE else f"{name}{separator}{queue}"
            for queue in self.settings.queues
        ]

    def register_schedules(self) -> None:
        """Register the ``@timer``/``@cron`` schedules (idempotent: one per name on the
        broker however many spoolers start), retrying in the background."""
        for schedule in self.handlers.schedules:
            if schedule.every_process:
                log.warning(
                    "%s has target=%r: uWSGI ran it in every such process; the "
                    "broker runs each firing once, here or in another spooler",
                    schedule.name,
                    schedule.target,
                )
        register_in_background(
            [
                (schedule.name, functools.partial(self._register, schedule))
                for schedule in self.handlers.schedules
            ],
            log,
        )

    def _register(self, schedule: Schedule) -> JobHandle:
        """On the registering thread, with a client of its own (clients are per thread)."""
        with Client(self.settings.servers, tls=self.settings.tls) as client:
            return client.submit_schedule(
                schedule.name, unique=schedule_unique(schedule.name), fields=schedule.fields
            )

    def work(self, **options: Any) -> int:
        try:
            return self.worker.work(max_jobs=self.settings.max_tasks, **options)
        finally:
            self.worker.close()
            self.client.close()

    def stop(self) -> None:
        self.worker.stop()

    def run_timer(self, schedule: Schedule, job: WorkerJob) -> bytes:
        """One firing: the function gets its signal number, as uWSGI's handlers do."""
        with self._time_limit():
            schedule.function(schedule.signum)
        return b""

    def run_job(self, job: WorkerJob) -> bytes:
        """One job: call its handlers, then complete it, retry it, or fail it for good."""
        pairs, body = decode_spool(job.data)
        attempt = int(dict(pairs).get(ATTEMPT_VAR, b"1"))
        env: dict[Any, Any] = {key: value for key, value in pairs if key != ATTEMPT_VAR}
        env["spooler_task_name"] = job.handle.encode()
        if body:
            env["body"] = body
        name = job.function.partition(QUEUE_SEPARATOR.decode())[0]
        raised = False
        try:
            with self._time_limit():
                code, reason = self._call(self.handlers.chains.get(name, []), env)
        except PickleRefused as exc:
            raise SpoolFailed(str(exc)) from None
        except Exception:
            code, reason, raised = SPOOL_RETRY, traceback.format_exc(), True
            log.exception("spool job %s (%s) raised", job.handle, name)
        if code == SPOOL_OK:
            return b""
        if not raised and env.get(b"ud_spool_ret") == b"%d" % SPOOL_RETRY:
            # @spoolforever: runs again and again, as under uWSGI, at a fixed pace.
            self._resubmit(job, pairs, body, attempt, self.settings.forever_interval)
            return b""
        settings = self.settings
        retry_or_give_up(
            log,
            f"spool job {job.handle} ({name})",
            attempt=attempt,
            attempts=settings.attempts,
            reason=reason,
            delay=backoff_delay(settings.retry_delay, attempt, cap=settings.max_retry_delay),
            resubmit=lambda delay: self._resubmit(job, pairs, body, attempt + 1, delay),
            give_up=lambda: SpoolFailed(f"gave up after {attempt} attempts: {reason}"),
        )
        return b""

    def _in_chdir(self, job: WorkerJob) -> contextlib.AbstractContextManager[None]:
        """``--chdir``: each job runs in that directory."""
        return working_directory(self.settings.chdir)

    @contextlib.contextmanager
    def _time_limit(self) -> Iterator[None]:
        """``--harakiri``, around the handlers only: a job cut off fails its attempt and
        this process is then replaced (a handler stuck that long may have left anything
        behind)."""
        try:
            with time_limit(self.settings.harakiri, "harakiri: the job"):
                yield
        except TimeLimitExceeded:
            self.worker.stop()
            raise

    def _call(self, chain: list[Handler], env: dict[Any, Any]) -> tuple[int, str]:
        for handler in chain:
            code = handler(env)
            if not isinstance(code, int) or isinstance(code, bool):
                return SPOOL_RETRY, f"handler returned {code!r}, not a SPOOL_* code"
            if code != SPOOL_IGNORE:
                return code, "" if code == SPOOL_OK else f"handler returned {code}"
        return SPOOL_IGNORE, "no handler took the job (all returned SPOOL_IGNORE)"

    def _resubmit(
        self,
        job: WorkerJob,
        pairs: list[tuple[bytes, bytes]],
        body: bytes,
        attempt: int,
        delay: float,
    ) -> None:
        kept = [(key, value) for key, value in pairs if key != ATTEMPT_VAR]
        payload = encode_spool([*kept, (ATTEMPT_VAR, b"%d" % attempt)], body)
        self.client.submit_background(
            job.function, payload, at=time.time() + delay if delay > 0 else None
        )


def run(modules: Sequence[str], settings: SpoolerSettings, *, burst: bool = False) -> int:
    """Import the handler modules and serve until SIGTERM/SIGINT (the running job finishes):
    in this process, or with ``settings.forked`` in processes a master keeps running."""
    sys.path.insert(0, ".")
    django = prepare()
    handlers = collect_handlers([import_module(spec) for spec in modules], settings)
    if not handlers.chains and not handlers.schedules:
        raise ConfigurationError(
            "the imported modules define no spool handler (a @spool "
            "function, a uwsgi_tasks task, a spooler(env) callable or "
            "a @timer/@cron function)"
        )
    serve = functools.partial(_serve, handlers, settings, burst=burst, django=django)
    if not settings.forked:
        return serve()
    return serve_forked(settings.processes, serve, respawn=not burst)


def _serve(handlers: Handlers, settings: SpoolerSettings, *, burst: bool, django: bool) -> int:
    spooler = Spooler(handlers, settings, django=django)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: spooler.stop())
    log.info("serving spool functions: %s", ", ".join(sorted(spooler.worker.tasks)))
    spooler.register_schedules()
    spooler.work(burst=burst)
    return 0
