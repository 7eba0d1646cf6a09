"""Small drop-in rules, without sockets: delays rounded up, names claimed once."""

from __future__ import annotations

import pytest

from broker import uwsgidecorators
from broker.client import JobRequest
from broker.protocol.packets import PacketType
from broker.protocol.reader import PacketReader


def test_a_delay_is_rounded_up_to_the_next_second_never_down() -> None:
    """A retry due in 1 s must not start 0.2 s later (SUBMIT_JOB_EPOCH has whole seconds)."""
    reader = PacketReader(accept_text=False)
    reader.feed(JobRequest("f", b"", background=True, at=1000.2).packet())
    packet = reader.next_event()
    assert packet.type is PacketType.SUBMIT_JOB_EPOCH  # type: ignore[union-attr]
    assert packet.args[2] == b"1001"  # type: ignore[union-attr]


def test_two_spool_functions_or_timers_under_one_name_are_refused() -> None:
    namespace: dict[str, object] = {"__name__": "handlers_twice"}
    source = (
        "from broker.uwsgidecorators import spool, timer\n"
        "@spool\ndef mail(env): ...\n"
        "@spool\ndef mail(env): ...\n"
    )
    try:
        with pytest.raises(
            ValueError,
            match=r"two spool functions are named 'mail': "
            r"handlers_twice\.mail \(line 2\) and "
            r"handlers_twice\.mail \(line 4\)",
        ):
            exec(compile(source, "handlers_twice.py", "exec"), namespace)
        with pytest.raises(
            ValueError,
            match=r"two timers are named "
            r"'spoolgear\.timer\.timers_twice\.tick'",
        ):
            exec(
                compile(
                    "from broker.uwsgidecorators import timer\n"
                    "@timer(5)\ndef tick(n): ...\n@timer(9)\ndef tick(n): ...\n",
                    "timers_twice.py",
                    "exec",
                ),
                {"__name__": "timers_twice"},
            )
    finally:
        uwsgidecorators.spool_functions.pop("mail", None)
        uwsgidecorators.schedules.pop("spoolgear.timer.timers_twice.tick", None)


def test_the_same_definition_imported_again_is_not_a_duplicate() -> None:
    source = "from broker.uwsgidecorators import spool\n@spool\ndef again(env): ...\n"
    try:
        for _ in range(2):
            exec(compile(source, "reimported.py", "exec"), {"__name__": "reimported"})
    finally:
        uwsgidecorators.spool_functions.pop("again", None)
