"""Drop-in for uWSGI's ``uwsgidecorators`` spool API: ``spool``, ``spoolraw``, ``spoolforever``.

Existing code changes one import (``from broker.uwsgidecorators import spool,
SPOOL_OK``) and keeps working: calling ``f.spool(...)`` (or ``f(...)``) queues a
spool job in spoolgear, and ``spoolgear spooler --import MODULE`` runs it with
uWSGI's semantics (shared/reference/uwsgi-spooler.md section 3.1):

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
import os
import pickle
from collections.abc import Callable, Mapping
from typing import Any

from broker.client import Client, JobHandle
from broker.core.model import Priority
from broker.protocol.spool_request import DEFAULT_SPOOL_FUNCTION
from broker.protocol.spool_request import spool_job as request_job
from broker.protocol.uwsgi import encode_vars

SPOOL_OK = -2
SPOOL_RETRY = -1
SPOOL_IGNORE = 0

# Keyword arguments that are spool options, not arguments, with pass_arguments=True.
SPOOL_OPTIONS = ("message_dict", "spooler", "priority", "at", "body")
# Vars the real uwsgidecorators uses, and the one spoolgear adds for JSON arguments.
FUNCTION_VAR, RETURN_VAR = "ud_spool_func", "ud_spool_ret"
JSON_ARGUMENTS_VAR = "spoolgear_arguments"

spool_functions: dict[str, SpoolFunction] = {}
_client: Client | None = None


def configure(servers: list[str]) -> None:
    """Send spool jobs to these brokers (instead of ``SPOOLGEAR_SERVERS``)."""
    global _client
    if _client is not None:
        _client.close()
    _client = Client(servers)


def _broker() -> Client:
    global _client
    if _client is None:
        servers = os.environ.get("SPOOLGEAR_SERVERS", "127.0.0.1:4730")
        _client = Client([server.strip() for server in servers.split(",") if server.strip()])
    return _client


class SpoolFunction:
    """A decorated function: calling it (or ``.spool()``) queues a job."""

    def __init__(self, function: Callable[..., Any], pass_arguments: bool,
                 returns: int | None) -> None:
        self.function = function
        self.name = function.__name__
        self.pass_arguments = pass_arguments
        self.returns = returns
        spool_functions[self.name] = self

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
                raise TypeError(f"{self.name}.spool() takes one dict and/or keyword arguments "
                                "(decorate with pass_arguments=True for other arguments)")
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


def spool_job(values: Mapping[str | bytes, Any]) -> JobHandle:
    """Queue one spool request (the vars a uWSGI app would pass to ``uwsgi.spool``).

    The job is the one the broker makes of the same request on its uwsgi socket
    (``broker.protocol.spool_request``), except that through Gearman a ``priority``
    can only make it HIGH and ``at`` counts in whole seconds.
    """
    encoded = {_key(key): _as_bytes(key, value) for key, value in values.items()}
    body = encoded.pop(b"body", b"")
    job = request_job(encode_vars(encoded.items()), body,
                      default_function=DEFAULT_SPOOL_FUNCTION.encode())
    if job.when:
        return _broker().submit_background(job.function.decode(), job.payload, at=job.when)
    priority = Priority.NORMAL if job.priority is None else Priority.HIGH
    return _broker().submit_background(job.function.decode(), job.payload, priority=priority)


def _key(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else key.encode()


def _as_bytes(key: str | bytes, value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value).encode()
    raise TypeError(f"spool value {key!r}={value!r}: use str, bytes, int or float "
                    "(or pass_arguments=True)")


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


class PickleRefused(ValueError):
    """A job carries pickled data and the spooler was not told to trust its producers."""


def unpickle(data: bytes, allow_pickle: bool) -> Any:
    if not allow_pickle:
        raise PickleRefused("this job carries pickled arguments; start the spooler with "
                            "--allow-pickle if its producers are trusted")
    return pickle.loads(data)


def _decorator(returns: int | None) -> Callable[..., Any]:
    def decorate(function: Callable[..., Any] | None = None, *,
                 pass_arguments: bool = False) -> Any:
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
