"""The ``GEARMAN_*`` settings, read once, checked, with the defaults of django-gearman-jbox.

Accepted names (docs/django.md): ``GEARMAN_CLIENT_SERVERS`` and
``GEARMAN_WORKER_SERVERS`` (jbox), both falling back to ``GEARMAN_SERVERS``
(django-gearman, -commands) and then to ``['127.0.0.1:4730']``;
``GEARMAN_SERIALIZER`` (``"json"``, or ``"pickle"`` for trusted legacy producers);
``GEARMAN_JOB_NAME`` (a callable from task name to wire name, django-gearman) and
``GEARMAN_CLIENT_NAMESPACE`` (an ``@namespace`` suffix, django-gearman-commands);
``GEARMAN_SSL`` (TLS to every broker: ``{"ca_file": ..., "certificate": ..., "key":
...}``, any of them, ``{}`` for the system's CAs and no client certificate);
``GEARMAN_STORE_DATABASE`` (the alias of the PostgreSQL database the brokers share as
their ``--store``: background jobs submitted inside ``transaction.atomic()`` on it are
written in that transaction, ``transactional.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import connections

from broker.addresses import DEFAULT_SERVER
from broker.errors import ConfigurationError
from broker.tls import TLSFiles

DEFAULT_SERVERS = (DEFAULT_SERVER,)
# Mule and farm messages go to these functions; the broker keeps their jobs in memory
# only (its default --transient patterns).
MULE_FUNCTION = "spoolgear.mule"
FARM_PREFIX = "spoolgear.farm."
SERIALIZERS = ("json", "pickle")


@dataclass(frozen=True)
class JobSettings:
    client_servers: tuple[str, ...]
    worker_servers: tuple[str, ...]
    serializer: str
    job_name: Callable[[str], str] | None
    namespace: str
    tls: TLSFiles | None = None
    store_database: str | None = None

    def wire_name(self, task_name: str) -> str:
        """The Gearman function name a task is registered and submitted under."""
        name = self.job_name(task_name) if self.job_name is not None else task_name
        return f"{name}@{self.namespace}" if self.namespace else name


def mule_function(mule_id: int | None = None) -> str:
    """The function of messages for mule ``mule_id``, or for any mule."""
    return MULE_FUNCTION if mule_id is None else f"{MULE_FUNCTION}.{int(mule_id)}"


def farm_function(farm: str) -> str:
    if not farm or any(c.isspace() for c in farm):
        raise ValueError(f"a farm name is a non-empty word, got {farm!r}")
    return FARM_PREFIX + farm


def _servers(name: str, fallback: Sequence[str]) -> tuple[str, ...]:
    value: Any = getattr(settings, name, None)
    if value is None:
        return tuple(fallback)
    if isinstance(value, str) or not all(isinstance(item, str) for item in value):
        raise ImproperlyConfigured(f"{name} must be a list of 'host[:port]' strings, got {value!r}")
    if not value:
        raise ImproperlyConfigured(f"{name} is empty: give at least one 'host[:port]'")
    return tuple(value)


def _tls() -> TLSFiles | None:
    value: Any = getattr(settings, "GEARMAN_SSL", None)
    if value is None or value is False:
        return None
    if not isinstance(value, dict):
        raise ImproperlyConfigured(
            f"GEARMAN_SSL must be a dict of ca_file, certificate and key, got {value!r}"
        )
    try:
        return TLSFiles.from_mapping(value, "GEARMAN_SSL")
    except ConfigurationError as exc:
        raise ImproperlyConfigured(str(exc)) from None


def _store_database() -> str | None:
    alias: Any = getattr(settings, "GEARMAN_STORE_DATABASE", None)
    if alias is None:
        return None
    if alias not in settings.DATABASES:
        raise ImproperlyConfigured(
            f"GEARMAN_STORE_DATABASE = {alias!r} is not one of DATABASES: name the alias of "
            "the PostgreSQL database the brokers use as their --store"
        )
    if connections[alias].vendor != "postgresql":
        raise ImproperlyConfigured(
            f"GEARMAN_STORE_DATABASE = {alias!r} is a {connections[alias].vendor} database: "
            "jobs can be written in a transaction only to a PostgreSQL --store"
        )
    return str(alias)


@functools.cache
def job_settings() -> JobSettings:
    """Read and check the settings once (a web request's enqueue reads them each time: a
    tenth of its cost); read again after Django says a setting changed (``override_settings``
    in tests)."""
    shared = _servers("GEARMAN_SERVERS", DEFAULT_SERVERS)
    serializer = getattr(settings, "GEARMAN_SERIALIZER", "json")
    if serializer not in SERIALIZERS:
        raise ImproperlyConfigured(
            f"GEARMAN_SERIALIZER must be one of {SERIALIZERS}, got {serializer!r}"
        )
    job_name = getattr(settings, "GEARMAN_JOB_NAME", None)
    if job_name is not None and not callable(job_name):
        raise ImproperlyConfigured(
            "GEARMAN_JOB_NAME must be a callable from task name to Gearman function name"
        )
    namespace = getattr(settings, "GEARMAN_CLIENT_NAMESPACE", "") or ""
    return JobSettings(
        tls=_tls(),
        store_database=_store_database(),
        client_servers=_servers("GEARMAN_CLIENT_SERVERS", shared),
        worker_servers=_servers("GEARMAN_WORKER_SERVERS", shared),
        serializer=serializer,
        job_name=job_name,
        namespace=str(namespace),
    )


def _forget_settings(*, setting: str, **_: Any) -> None:
    if setting.startswith("GEARMAN_") or setting == "DATABASES":
        job_settings.cache_clear()


setting_changed.connect(_forget_settings, dispatch_uid="django_jobs.conf")
