"""The parts of uWSGI's ``uwsgi`` module that spool handlers use, over spoolgear.

Inside its own processes ``spoolgear spooler`` makes this module importable as
``uwsgi`` (and ``broker.uwsgi_compat.decorators`` as ``uwsgidecorators``), so handler
modules written for uWSGI import unchanged: ``import uwsgi``, ``uwsgi.SPOOL_OK``,
``uwsgi.spooler = my_spooler``, ``uwsgi.spool(...)``, ``uwsgi.mule_id()``.
Nothing is installed under those names on disk, so a real uWSGI process keeps
its own module. Elsewhere, import it as ``broker.uwsgi_compat.api``.

``spool()`` queues a request in the brokers of ``SPOOLGEAR_SERVERS``
(comma-separated, default ``127.0.0.1:4730``) or those given to ``configure()``;
with ``spooler="HOST:PORT"`` (or a unix socket path) it is sent as a spool packet
to that uwsgi socket instead, the networked spooling uWSGI's docs describe.
"""

from __future__ import annotations

import os
import stat
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

from broker.addresses import DEFAULT_SERVER
from broker.errors import ConfigurationError
from broker.gearman.client import Client, JobHandle
from broker.gearman.function_names import claim
from broker.protocol.priorities import Priority
from broker.protocol.spool_request import DEFAULT_SPOOL_FUNCTION, names_address
from broker.protocol.spool_request import spool_job as request_job
from broker.protocol.uwsgi import encode_vars
from broker.tls import TLSFiles
from broker.uwsgi_compat.spool_client import send_spool

SPOOL_OK = -2
SPOOL_RETRY = -1
SPOOL_IGNORE = 0

SpoolHandler = Callable[[dict[Any, Any]], int]
assigned_spoolers: dict[str, SpoolHandler] = {}
"""What uWSGI code assigned to ``uwsgi.spooler``: its plain-dict spool handler."""


class _UwsgiModule(types.ModuleType):
    """Lets ``uwsgi.spooler = f`` be seen, and refused when it would replace another."""

    @property
    def spooler(self) -> SpoolHandler | None:
        return assigned_spoolers.get("uwsgi.spooler")

    @spooler.setter
    def spooler(self, handler: SpoolHandler) -> None:
        try:
            claim(
                assigned_spoolers,
                "uwsgi.spooler",
                handler,
                lambda known: known,
                "uwsgi.spooler handlers",
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"{exc}: under uWSGI the last one silently wins; "
                "define module-level spooler(env) functions instead, "
                "which run in import order (SPOOL_IGNORE passes on)"
            ) from None


sys.modules[__name__].__class__ = _UwsgiModule

MULE_ID_VARIABLE = "SPOOLGEAR_MULE_ID"
"""Set by ``gearman_worker --mule N`` for ``mule_id()``; 0 (not a mule) elsewhere."""

_client: Client | None = None


def configure(servers: list[str], *, tls: TLSFiles | None = None) -> None:
    """Send spool jobs to these brokers (instead of ``SPOOLGEAR_SERVERS``)."""
    global _client
    if _client is not None:
        _client.close()
    _client = Client(servers, tls=tls)


def disconnect() -> None:
    """Close the connections to the brokers; the next spool call opens new ones (call it
    in a child after ``fork``, or when a process is done spooling)."""
    global _client
    if _client is not None:
        _client.close()
        _client = None


def _broker() -> Client:
    global _client
    if _client is None:
        servers = os.environ.get("SPOOLGEAR_SERVERS", DEFAULT_SERVER)
        # SPOOLGEAR_SSL=1: TLS, with the files named by libgearman's variables.
        tls = TLSFiles.from_environment() if os.environ.get("SPOOLGEAR_SSL") == "1" else None
        _client = Client(
            [server.strip() for server in servers.split(",") if server.strip()], tls=tls
        )
    return _client


def mule_id() -> int:
    """This process's mule id (``gearman_worker --mule N``), 0 when it is not a mule."""
    return int(os.environ.get(MULE_ID_VARIABLE, "0"))


def mule_get_msg(*_: Any, **__: Any) -> bytes:
    raise NotImplementedError(
        "programmed mule loops are not provided: write the loop's body as a @mulemsg() or "
        "@farm(NAME) handler (django_jobs.mules) and run `manage.py gearman_worker --mule N` "
        "(docs/moving-over.md, uWSGI mules)"
    )


farm_get_msg = mule_get_msg


def spool(values: Mapping[str | bytes, Any] | None = None, /, **kwargs: Any) -> str:
    """uWSGI's ``uwsgi.spool(dict)`` / ``uwsgi.spool(key=value, ...)``: queue one request;
    returns its job handle (where uWSGI returns the spool file's path)."""
    request: dict[str | bytes, Any] = dict(values or {})
    request.update(kwargs)
    return spool_job(request).handle


def _is_uwsgi_socket(spooler: bytes) -> bool:
    """A ``spooler`` that names a uwsgi socket (``HOST:PORT``, or an existing unix socket),
    not a spooler's name or directory."""
    if spooler.startswith(b"/"):
        try:
            return stat.S_ISSOCK(os.stat(spooler).st_mode)
        except OSError:
            return False
    return names_address(spooler)


def spool_job(values: Mapping[str | bytes, Any]) -> JobHandle:
    """Queue one spool request (the vars a uWSGI app would pass to ``uwsgi.spool``).

    The job is the one the broker makes of the same request on its uwsgi socket
    (``broker.protocol.spool_request``), except that through Gearman a ``priority``
    can only make it HIGH and ``at`` counts in whole seconds.
    """
    encoded = {_key(key): as_spool_value(key, value) for key, value in values.items()}
    target = encoded.get(b"spooler", b"")
    if _is_uwsgi_socket(target):
        del encoded[b"spooler"]
        address = target.decode("utf-8", "replace")
        send_spool(address, encoded)
        return JobHandle(address, "")  # stored there; a uwsgi socket does not name the job
    body = encoded.pop(b"body", b"")
    job = request_job(
        encode_vars(encoded.items()), body, default_function=DEFAULT_SPOOL_FUNCTION.encode()
    )
    if job.when:
        return _broker().submit_background(job.function.decode(), job.payload, at=job.when)
    priority = Priority.NORMAL if job.priority is None else Priority.HIGH
    return _broker().submit_background(job.function.decode(), job.payload, priority=priority)


def _key(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else key.encode()


def as_spool_value(key: str | bytes, value: Any) -> bytes:
    """A spool var's bytes: str, bytes and numbers as text, and ``True``/``False`` as
    uWSGI's Python 2 plugin cast them (``str(value)``)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str | int | float):
        return str(value).encode()
    raise TypeError(
        f"spool value {key!r}={value!r}: use str, bytes, int, float or bool "
        "(or pass_arguments=True)"
    )
