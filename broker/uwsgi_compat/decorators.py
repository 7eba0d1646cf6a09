"""Drop-in for uWSGI's ``uwsgidecorators``: ``spool``, ``spoolraw``, ``spoolforever``,
``timer``, ``rbtimer`` and ``cron`` (``signal``, ``filemon``, ``mule``, ``lock`` and
``rpc`` are importable and refuse with what to do instead).

Existing code changes one import (``from broker.uwsgi_compat.decorators import spool,
SPOOL_OK``) and keeps working: calling ``f.spool(...)`` (or ``f(...)``) queues a
spool job in spoolgear, and ``spoolgear spooler --import MODULE`` runs it with
uWSGI's semantics (docs/uwsgi.md, "Drop-in decorators"):

- the job's function is the decorated function's ``__name__`` (the
  ``ud_spool_func`` var), ``FUNCTION@QUEUE`` with a ``spooler=`` argument;
- ``@spool`` always reports SPOOL_OK, ``@spoolforever`` SPOOL_RETRY (run again),
  ``@spoolraw`` whatever the function returns;
- without ``pass_arguments`` the call's dict and keyword arguments become the
  job's vars and the function receives that dict; with it, the function gets its
  ``*args, **kwargs`` back.

Fixed on the way: any ``str``, ``bytes``, ``int`` or ``float`` value is accepted
(uWSGI on Python 3 takes bytes only); ``pass_arguments`` travels as JSON, not
pickle (pickled arguments written by the real uwsgidecorators are still read
when the spooler is started with ``--allow-pickle``); a value that is not valid
UTF-8 reaches the function as bytes instead of looping forever on a decode error;
an exception is retried a bounded number of times and then kept in the broker's
failed list. Jobs go to the brokers in ``SPOOLGEAR_SERVERS`` (comma-separated,
default ``127.0.0.1:4730``) or those given to ``configure()``.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from broker.errors import BrokerError
from broker.gearman.client import schedule_fields, uwsgi_cron
from broker.gearman.function_names import claim
from broker.uwsgi_compat import api as uwsgi
from broker.uwsgi_compat.api import SPOOL_IGNORE, SPOOL_OK, SPOOL_RETRY, configure, spool_job

__all__ = [
    "SPOOL_IGNORE",
    "SPOOL_OK",
    "SPOOL_RETRY",
    "PickleRefused",
    "Schedule",
    "SpoolFunction",
    "configure",
    "cron",
    "filemon",
    "lock",
    "mule",
    "rbtimer",
    "rpc",
    "schedules",
    "signal",
    "spool",
    "spool_functions",
    "spoolforever",
    "spoolraw",
    "timer",
    "unpickle",
    "uwsgi",
]

# Keyword arguments that are spool options, not arguments, with pass_arguments=True.
SPOOL_OPTIONS = ("message_dict", "spooler", "priority", "at", "body")
# Vars the real uwsgidecorators uses, and the one spoolgear adds for JSON arguments.
FUNCTION_VAR, RETURN_VAR = "ud_spool_func", "ud_spool_ret"
JSON_ARGUMENTS_VAR = "spoolgear_arguments"

spool_functions: dict[str, SpoolFunction] = {}


class SpoolFunction:
    """A decorated function: calling it (or ``.spool()``) queues a job."""

    def __init__(
        self, function: Callable[..., Any], pass_arguments: bool, returns: int | None
    ) -> None:
        self.function = function
        self.name = function.__name__
        self.pass_arguments = pass_arguments
        self.returns = returns
        claim(spool_functions, self.name, self, lambda known: known.function, "spool functions")

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        return self.spool(*args, **kwargs)

    def spool(self, *args: Any, **kwargs: Any) -> str:
        """Queue a job; returns its handle (where uWSGI returns the spool file's path)."""
        values: dict[str | bytes, Any] = {FUNCTION_VAR: self.name}
        if self.returns is not None:
            values[RETURN_VAR] = str(self.returns)
        if self.pass_arguments:
            for option in SPOOL_OPTIONS:
                if option in kwargs:
                    values[option] = kwargs.pop(option)
            values[JSON_ARGUMENTS_VAR] = json.dumps({"args": args, "kwargs": kwargs})
        else:
            if len(args) > 1 or (args and not isinstance(args[0], Mapping)):
                raise TypeError(
                    f"{self.name}.spool() takes one dict and/or keyword arguments "
                    "(decorate with pass_arguments=True for other arguments)"
                )
            values.update(*args, **kwargs)
        return spool_job(values).handle

    def run(self, task: dict[Any, Any], allow_pickle: bool) -> int:
        """Call the function for a job's vars, as uwsgidecorators' spool manager does."""
        values = {_text(key): value for key, value in task.items()}
        if JSON_ARGUMENTS_VAR in values:
            arguments = json.loads(values[JSON_ARGUMENTS_VAR])
            result = self.function(*arguments["args"], **arguments["kwargs"])
        elif "args" in values:
            args = unpickle(values["args"], allow_pickle)
            kwargs = unpickle(values["kwargs"], allow_pickle) if "kwargs" in values else {}
            result = self.function(*args, **kwargs)
        else:
            result = self.function({key: _decoded(value) for key, value in values.items()})
        returns = values.get(RETURN_VAR)
        if returns is not None:
            return int(returns)
        return self.returns if self.returns is not None else result


def _text(key: str | bytes) -> str:
    return key.decode() if isinstance(key, bytes) else key


def _decoded(value: Any) -> Any:
    """UTF-8 text where it is text; bytes stay bytes (uWSGI would loop on them forever)."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return value
    return value


class PickleRefused(BrokerError, ValueError):
    """A job carries pickled data and the spooler was not told to trust its producers."""


def unpickle(data: bytes, allow_pickle: bool) -> Any:
    if not allow_pickle:
        raise PickleRefused(
            "this job carries pickled arguments; start the spooler with "
            "--allow-pickle if its producers are trusted"
        )
    return pickle.loads(data)


def _decorator(returns: int | None) -> Callable[..., Any]:
    def decorate(
        function: Callable[..., Any] | None = None, *, pass_arguments: bool = False
    ) -> Any:
        if function is None:
            return lambda inner: SpoolFunction(inner, pass_arguments, returns)
        return SpoolFunction(function, pass_arguments, returns)

    return decorate


spool = _decorator(SPOOL_OK)
spool.__doc__ = "Run the function in a spooler; the job is done whatever it returns."
spoolforever = _decorator(SPOOL_RETRY)
spoolforever.__doc__ = "Run the function in a spooler, again and again."
spoolraw = _decorator(None)
spoolraw.__doc__ = "Run the function in a spooler; its return value is the spool code."


# uWSGI signal targets meaning "every such process"; a broker schedule fires once.
EVERY_PROCESS_TARGETS = ("workers", "active-workers", "mules", "spoolers", "all")
SCHEDULE_PREFIX = "spoolgear.timer."


@dataclass(frozen=True)
class Schedule:
    """A ``@timer``/``@rbtimer``/``@cron`` function: ``spoolgear spooler`` registers it on
    the broker when it starts (idempotently, so one schedule however many spoolers run)
    and runs each firing once, calling the function with its signal number."""

    function: Callable[..., Any]
    fields: tuple[str, ...]
    signum: int
    target: str

    @property
    def name(self) -> str:
        """The Gearman function of its firings (and the schedule's identity)."""
        return f"{SCHEDULE_PREFIX}{self.function.__module__}.{self.function.__qualname__}"

    @property
    def every_process(self) -> bool:
        """uWSGI ran it in every process of the target; here each firing runs once."""
        return self.target in EVERY_PROCESS_TARGETS


schedules: dict[str, Schedule] = {}


def _scheduled(fields: tuple[str, ...], target: str, signum: int | None) -> Any:
    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        number = len(schedules) if signum is None else signum
        entry = Schedule(function, fields, number, target)
        claim(schedules, entry.name, entry, lambda known: known.function, "timers")
        return function  # as uwsgidecorators: the name stays the plain function

    return decorate


def timer(
    secs: int, *, target: str = "", signum: int | None = None, iterations: int | None = None
) -> Any:
    """Run the function every ``secs`` seconds (``iterations`` times, None: forever)."""
    if not isinstance(secs, int) or isinstance(secs, bool) or secs < 1:
        raise ValueError(f"a timer needs whole seconds >= 1, got {secs!r}")
    return _scheduled(schedule_fields(every=secs, iterations=iterations), target, signum)


rbtimer = timer


def cron(
    minute: int | str = -1,
    hour: int | str = -1,
    day: int | str = -1,
    month: int | str = -1,
    dayweek: int | str = -1,
    *,
    target: str = "",
    signum: int | None = None,
) -> Any:
    """Run the function when the broker's local time matches (uWSGI's numbers: -1 any,
    -N every N; or cron text per field)."""
    return _scheduled(
        schedule_fields(cron=uwsgi_cron(minute, hour, day, month, dayweek)), target, signum
    )


def _not_provided(name: str, instead: str) -> Callable[..., Any]:
    """uwsgidecorators' names for uWSGI process features: importable, so a module fails
    at the line that uses one, with what to do instead."""

    def refuse(*_: Any, **__: Any) -> Any:
        raise NotImplementedError(
            f"@{name} is a uWSGI process feature with no spoolgear "
            f"equivalent: {instead} (docs/moving-over.md)"
        )

    refuse.__name__ = name
    return refuse


signal = _not_provided("signal", "run the work as a @task, @timer or @cron instead")
filemon = _not_provided("filemon", "have the writer of the files queue a job instead")
mule = _not_provided(
    "mule",
    "a programmed mule loop becomes a @mulemsg()/@farm handler "
    "of `manage.py gearman_worker --mule N` (django_jobs.mules)",
)
lock = _not_provided("lock", "a job runs in one worker at a time; coalesce by unique")
rpc = _not_provided("rpc", "submit a foreground job and wait for its result")
