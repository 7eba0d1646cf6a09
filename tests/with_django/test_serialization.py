"""Job payloads: every supported type round trips, the rest is refused with its path."""

from __future__ import annotations

import datetime as dt
import pickle
import re
import uuid
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from django_jobs.sending.serialization import (
    PayloadError,
    dumps_call,
    dumps_result,
    loads_call,
    loads_result,
)

EVERY_TYPE = {
    "none": None,
    "bool": True,
    "int": -(2**70),
    "float": 1.5,
    "str": "é\x00✓",
    "list": [1, [2, 3]],
    "datetime": dt.datetime(2026, 11, 22, 10, 30, 1, 5),
    "aware": dt.datetime(2026, 11, 22, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    "date": dt.date(2026, 2, 28),
    "time": dt.time(23, 59, 58, 1),
    "timedelta": dt.timedelta(days=-1, seconds=5, microseconds=7),
    "decimal": Decimal("-12345678901234567890.000000001"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "bytes": b"\x00\xff\x80",
    "int_keys": {1: "one", None: "none"},
    "tagged_key": {"__type__": "mine", "value": 3},
}


def test_every_supported_type_round_trips_through_a_call() -> None:
    args, kwargs, setup = loads_call(dumps_call([EVERY_TYPE], dict(EVERY_TYPE)))
    assert args == [EVERY_TYPE]
    assert kwargs == EVERY_TYPE
    assert kwargs["aware"].utcoffset() == dt.timedelta(hours=2)
    assert setup == {}
    assert loads_call(dumps_call([], {}, setup={"buffer": {"seen": b"x"}})).setup == {
        "buffer": {"seen": b"x"}
    }


def test_tuples_become_lists_as_in_any_json() -> None:
    assert loads_result(dumps_result((1, (2,)))) == [1, [2]]


def test_payload_is_readable_json_for_other_producers() -> None:
    assert dumps_call([1, "a"], {"k": b"x"}) == (
        b'{"args":[1,"a"],"kwargs":{"k":{"__type__":"bytes","value":"eA=="}}}'
    )
    assert loads_call(b'{"args": [2]}') == ([2], {}, {})
    assert loads_call(b"") == ([], {}, {})


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (object(), "args[0]"),
        ({"k": {1, 2}}, "args[0]['k']"),
        (float("nan"), "args[0]"),
        ({(1, 2): "tuple key"}, "args[0]"),
    ],
)
def test_unsupported_values_are_refused_with_their_path(value: object, where: str) -> None:
    with pytest.raises(PayloadError, match="^" + re.escape(where)):
        dumps_call([value], {})


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b'["args"]',
        b'{"args": 1}',
        b'{"args": [], "other": 1}',
        b'{"args": [{"__type__": "date", "value": "yesterday"}]}',
        b'{"args": [{"__type__": "rocket", "value": 1}]}',
        b"\xff\xfe",
    ],
)
def test_malformed_payloads_raise_payload_error(data: bytes) -> None:
    with pytest.raises(PayloadError):
        loads_call(data)


def test_pickle_is_refused_unless_opted_in() -> None:
    legacy = pickle.dumps({"args": [dt.date(2020, 1, 1)], "kwargs": {}}, protocol=2)
    with pytest.raises(PayloadError, match="GEARMAN_SERIALIZER = 'pickle'"):
        loads_call(legacy)
    assert loads_call(legacy, "pickle") == ([dt.date(2020, 1, 1)], {}, {})
    assert loads_call(dumps_call([1], {}, "pickle"), "pickle") == ([1], {}, {})
    assert loads_call(dumps_call([1], {}), "pickle") == ([1], {}, {}), "JSON still read"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.binary()
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.datetimes()
    | st.dates()
    | st.uuids(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text() | st.integers(), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_any_supported_value_round_trips(value: object) -> None:
    assert loads_result(dumps_result(value)) == value
