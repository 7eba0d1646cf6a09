"""Job payloads and results: JSON with typed values, pickle only when explicitly allowed.

A job's payload is ``{"args": [...], "kwargs": {...}}``, plus ``"setup": {...}``
for ``@task`` calls (their retry policy, attempt and buffer); a result is the
bare value. Besides what JSON has, these round trip, each as an object
``{"__type__": NAME, "value": ...}``: datetime (naive or aware), date, time,
timedelta, Decimal, UUID and bytes; a dict whose keys are not all strings, or
that has a ``__type__`` key of its own, becomes ``{"__type__": "dict",
"value": [[key, value], ...]}``. Tuples become lists, as in any JSON.
Anything else is refused with the path of the offending value.

``GEARMAN_SERIALIZER = "pickle"`` writes django-gearman's pickled dicts and
reads both: unpickling runs code chosen by whoever can reach the server, so
it is for trusted legacy producers only.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import pickle
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, NamedTuple

from broker.errors import BrokerError

TYPE_KEY = "__type__"
SUPPORTED = (
    "None, bool, int, float, str, list, tuple, dict, datetime, date, time, "
    "timedelta, Decimal, UUID, bytes"
)
_PICKLE_PROTOCOL = 2  # readable by the Python 2 workers of django-gearman


class PayloadError(BrokerError, ValueError):
    """A value cannot be encoded, or received bytes are not a payload this side accepts."""


def _tagged(name: str, value: Any) -> dict[str, Any]:
    return {TYPE_KEY: name, "value": value}


def _delta(value: dt.timedelta) -> list[int]:
    return [value.days, value.seconds, value.microseconds]


# Checked in order: datetime before date (a datetime is a date).
_ENCODERS: tuple[tuple[type, str, Callable[[Any], Any]], ...] = (
    (dt.datetime, "datetime", dt.datetime.isoformat),
    (dt.date, "date", dt.date.isoformat),
    (dt.time, "time", dt.time.isoformat),
    (dt.timedelta, "timedelta", _delta),
    (Decimal, "decimal", str),
    (uuid.UUID, "uuid", str),
    (bytes, "bytes", lambda value: base64.b64encode(value).decode()),
)

_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "timedelta": lambda value: dt.timedelta(*value),
    "decimal": Decimal,
    "uuid": uuid.UUID,
    "bytes": base64.b64decode,
    "dict": dict,
}


def to_json(value: Any, path: str = "value") -> Any:
    """``value`` as plain JSON data, typed values tagged; ``path`` names it in errors."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise PayloadError(f"{path} is {value}, which JSON cannot carry")
        return value
    if isinstance(value, list | tuple):
        return [to_json(item, f"{path}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value) and TYPE_KEY not in value:
            return {key: to_json(item, f"{path}[{key!r}]") for key, item in value.items()}
        for key in value:
            if isinstance(key, list | tuple | dict):
                raise PayloadError(
                    f"{path} has the key {key!r}; a payload's dict keys must be scalars"
                )
        return _tagged(
            "dict",
            [
                [to_json(key, f"{path} key {key!r}"), to_json(item, f"{path}[{key!r}]")]
                for key, item in value.items()
            ],
        )
    for kind, name, encode in _ENCODERS:
        if isinstance(value, kind):
            return _tagged(name, encode(value))
    raise PayloadError(
        f"{path} is a {type(value).__name__}, which a job payload cannot "
        f"carry; supported: {SUPPORTED}"
    )


def _from_tagged(obj: dict[str, Any]) -> Any:
    if TYPE_KEY not in obj:
        return obj
    decode = _DECODERS.get(obj[TYPE_KEY])
    if decode is None or "value" not in obj:
        raise PayloadError(f"unknown typed value {obj!r}")
    try:
        return decode(obj["value"])
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise PayloadError(f"bad {obj[TYPE_KEY]} value {obj['value']!r}: {exc}") from exc


# Made once: json.loads and json.dumps with options build a new one per call.
_DECODER = json.JSONDecoder(object_hook=_from_tagged)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _loads_json(data: bytes) -> Any:
    try:
        return _DECODER.decode(data.decode(json.detect_encoding(data), "surrogatepass"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"not JSON: {exc}") from exc


def _dumps_json(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


def _looks_like_pickle(data: bytes) -> bool:
    return data[:1] == b"\x80" or data[:1] == b"("


WORKFLOW = "workflow"
"""The setup key of a chain's or group's step (``django_jobs.workflows``): the worker
looks up what it ran after, and retries it as the same job."""


class Call(NamedTuple):
    args: list[Any]
    kwargs: dict[str, Any]
    setup: dict[str, Any]


def dumps_call(
    args: list[Any] | tuple[Any, ...],
    kwargs: dict[str, Any],
    serializer: str = "json",
    setup: dict[str, Any] | None = None,
) -> bytes:
    """Encode a task call; raises ``PayloadError`` naming the argument that cannot go."""
    call: dict[str, Any] = {"args": list(args), "kwargs": kwargs}
    if setup:
        call["setup"] = setup
    if serializer == "pickle":
        return pickle.dumps(call, protocol=_PICKLE_PROTOCOL)
    return _dumps_json({key: to_json(value, key) for key, value in call.items()})


def loads_call(data: bytes, serializer: str = "json") -> Call:
    """Decode a task call. An empty payload is a call without arguments."""
    if not data:
        return Call([], {}, {})
    if _looks_like_pickle(data):
        if serializer != "pickle":
            raise PayloadError(
                "this payload is a pickle; it is only decoded with "
                "GEARMAN_SERIALIZER = 'pickle', for trusted producers"
            )
        call = pickle.loads(data, encoding="latin1")
    else:
        call = _loads_json(data)
    if not isinstance(call, dict) or set(call) - {"args", "kwargs", "setup"}:
        raise PayloadError(
            f'a job payload is {{"args": [...], "kwargs": {{...}}}}, got {call!r:.200}'
        )
    args, kwargs, setup = call.get("args") or [], call.get("kwargs") or {}, call.get("setup") or {}
    if (
        not isinstance(args, list | tuple)
        or not isinstance(kwargs, dict)
        or not isinstance(setup, dict)
    ):
        raise PayloadError(f"args must be a list, kwargs and setup dicts, got {call!r:.200}")
    return Call(list(args), kwargs, setup)


def dumps_result(value: Any, serializer: str = "json") -> bytes:
    if serializer == "pickle":
        return pickle.dumps(value, protocol=_PICKLE_PROTOCOL)
    return _dumps_json(to_json(value, "result"))


def loads_result(data: bytes, serializer: str = "json") -> Any:
    """Decode a result; an empty one (a worker that returned nothing) is None."""
    if not data:
        return None
    if _looks_like_pickle(data) and serializer == "pickle":
        return pickle.loads(data, encoding="latin1")
    return _loads_json(data)
