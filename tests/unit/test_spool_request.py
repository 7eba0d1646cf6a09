"""Spool requests to jobs (broker/protocol/spool_request.py) and the queue ranks they use."""

from __future__ import annotations

import pytest

from broker import uwsgidecorators
from broker.protocol.packets import PacketType
from broker.protocol.priorities import Priority, spool_rank
from broker.protocol.spool_request import SpoolRefused, spool_job
from broker.protocol.uwsgi import decode_spool, encode_vars
from broker.uwsgi_api import as_spool_value
from tests.unit.harness import Harness

T = PacketType
DEFAULT = b"uwsgi_spooler"


def job_for(*pairs: tuple[bytes, bytes], body: bytes = b""):  # type: ignore[no-untyped-def]
    return spool_job(encode_vars(pairs), body, default_function=DEFAULT)


def test_the_function_comes_from_uwsgidecorators_then_uwsgi_tasks_then_the_default() -> None:
    assert job_for((b"ud_spool_func", b"mail"), (b"function_name", b"app.t")).function == b"mail"
    assert job_for((b"function_name", b"app.tasks.send")).function == b"app.tasks.send"
    assert job_for((b"REQUEST_METHOD", b"GET")).function == DEFAULT
    assert job_for().function == DEFAULT  # an empty packet is a plain, empty dict


def test_a_named_spooler_is_a_queue_in_the_function_name() -> None:
    job = job_for((b"ud_spool_func", b"mail"), (b"spooler", b"/var/spool/mail"))
    assert job.function == b"mail@/var/spool/mail"


def test_the_payload_keeps_every_var_and_the_body() -> None:
    pairs = [(b"ud_spool_func", b"mail"), (b"at", b"5"), (b"priority", b"2"), (b"k", b"\xff")]
    job = job_for(*pairs, body=b"BODY")
    assert decode_spool(job.payload) == (pairs, b"BODY")


def test_priority_is_digits_and_lower_runs_first() -> None:
    assert job_for().priority is None
    assert job_for((b"priority", b"0")).priority == 0
    assert job_for((b"priority", b"42")).priority == 42
    assert spool_rank(0) < spool_rank(42) < Priority.HIGH < spool_rank(None) == Priority.NORMAL
    for bad in (b"../x", b"-1", b"1.5", b"", b"high", b"1000"):
        with pytest.raises(SpoolRefused, match="priority"):
            job_for((b"priority", bad))


def test_at_is_epoch_seconds_with_the_fraction_ignored() -> None:
    assert job_for().when == 0.0
    assert job_for((b"at", b"1700000000")).when == 1700000000.0
    assert job_for((b"at", b"1700000000.75")).when == 1700000000.0
    for bad in (b"abc", b"-5", b"", b"12abc", b"1.2.3"):
        with pytest.raises(SpoolRefused, match="at"):
            job_for((b"at", bad))


@pytest.mark.parametrize("name", [b"", b"a\x00b", b"a@b", b"x" * 256, b"caf\xc3\xa9"])
def test_names_that_cannot_be_gearman_functions_are_refused(name: bytes) -> None:
    with pytest.raises(SpoolRefused):
        job_for((b"ud_spool_func", name))
    with pytest.raises(SpoolRefused):
        job_for((b"spooler", name))


def test_malformed_vars_are_refused_not_stored() -> None:
    with pytest.raises(SpoolRefused, match="malformed"):
        spool_job(b"\x00\x00\x01\x00x", b"", default_function=DEFAULT)  # empty key
    with pytest.raises(SpoolRefused, match="malformed"):
        spool_job(b"\x01\x00k\x09\x00v", b"", default_function=DEFAULT)  # value runs past


def test_spool_priorities_run_lowest_first_and_before_gearman_priorities() -> None:
    h = Harness()
    client, worker = h.peer(), h.peer()
    client.submit(b"f", b"high", kind=T.SUBMIT_JOB_HIGH_BG)
    client.submit(b"f", b"normal")
    for priority in (7, 0, 30):
        h.broker.submit(None, b"f", b"", b"spool %d" % priority, spool_rank(priority), True)
    h.broker.submit(None, b"f", b"", b"spool none", spool_rank(None), True)
    assert client.admin(b"prioritystatus") == b"f\t4\t2\t0\t0\n.\n"
    worker.send(T.CAN_DO, b"f")
    order = []
    while (assigned := worker.grab()) is not None:
        order.append(assigned[3])
        worker.send(T.WORK_COMPLETE, assigned[0], b"")
    assert order == [b"spool 0", b"spool 7", b"spool 30", b"high", b"normal", b"spool none"]


def test_the_drop_in_decorators_refuse_what_the_broker_would_refuse() -> None:
    with pytest.raises(SpoolRefused, match="priority"):
        uwsgidecorators.spool_job({"ud_spool_func": "f", "priority": "high"})
    with pytest.raises(TypeError, match="use str, bytes, int, float or bool"):
        uwsgidecorators.spool_job({"ud_spool_func": "f", "items": [1, 2]})
    with pytest.raises(SpoolRefused, match="is an address"):  # when no uwsgi socket named so
        spool_job(encode_vars([(b"spooler", b"127.0.0.1:10001")]), b"", default_function=DEFAULT)


def test_spool_values_are_cast_as_uwsgi_did_and_default_names_the_unnamed_spooler() -> None:
    assert as_spool_value("test", True) == b"True"
    assert as_spool_value("n", 5) == b"5"
    job = spool_job(
        encode_vars([(b"ud_spool_func", b"f"), (b"spooler", b"default")]),
        b"",
        default_function=DEFAULT,
    )
    assert job.function == b"f"
    job = spool_job(
        encode_vars([(b"ud_spool_func", b"f"), (b"spooler", b"/var/spool/mail")]),
        b"",
        default_function=DEFAULT,
    )
    assert job.function == b"f@/var/spool/mail"
