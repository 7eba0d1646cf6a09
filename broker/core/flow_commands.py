"""The admin protocol's flow-control commands (spoolgear's own; control commands).

``pause PATTERN`` and ``resume PATTERN``; ``limit PATTERN rate N/s|N/m|N/h|none``,
``limit PATTERN running N|none`` and ``limit PATTERN per-key N|none``; ``show limits``:
one line per rule, ``PATTERN\\tRATE\\tMAX_RUNNING\\tPAUSED\\tRUNNING\\tQUEUED\\tPER_KEY``
(``-`` where there is no limit), then ``.``. Each answers ``OK``, or ``ERR`` with what was
wrong.
"""

from __future__ import annotations

from broker.core.flow import FlowControl, parse_rate, rate_text
from broker.core.model import Function

OK = b"OK\r\n"


def _err(code: bytes, text: str) -> bytes:
    return b"ERR %s %s\r\n" % (code, text.replace(" ", "+").encode())


def pause(flow: FlowControl, words: list[bytes], paused: bool) -> bytes:
    if len(words) != 2:
        return _err(b"INVALID_ARGUMENTS", f"usage: {words[0].decode()} PATTERN")
    flow.put(flow.rule(words[1])._replace(paused=paused))
    return OK


def limit(flow: FlowControl, words: list[bytes]) -> bytes:
    if len(words) != 4 or words[2].lower() not in (b"rate", b"running", b"per-key"):
        return _err(
            b"INVALID_ARGUMENTS",
            "usage: limit PATTERN rate N/s|N/m|N/h|none, running N|none, or per-key N|none",
        )
    pattern, what, value = words[1], words[2].lower(), words[3].decode("ascii", "replace")
    rule = flow.rule(pattern)
    if what == b"rate":
        try:
            rate, per = (0, 1.0) if value == "none" else parse_rate(value)
        except ValueError as exc:
            return _err(b"INVALID_RATE", str(exc))
        rule = rule._replace(rate=rate, per=per)
    else:
        if value != "none" and not (value.isdigit() and int(value) >= 1):
            return _err(b"INVALID_LIMIT", f"{value!r} is not a count from 1, or none")
        count = 0 if value == "none" else int(value)
        running = what == b"running"
        rule = rule._replace(running=count) if running else rule._replace(per_key=count)
    flow.put(rule)
    return OK


def show_limits(flow: FlowControl) -> bytes:
    lines = []
    for rule in flow.rules():
        members = flow.gates[rule.pattern].members
        lines.append(
            b"%s\t%s\t%s\t%d\t%d\t%d\t%s\n"
            % (
                rule.pattern,
                rate_text(rule).encode() if rule.rate else b"-",
                b"%d" % rule.running if rule.running else b"-",
                rule.paused,
                sum(function.running for function in members),
                sum(_queued(function) for function in members),
                b"%d" % rule.per_key if rule.per_key else b"-",
            )
        )
    return b"".join([*lines, b".\n"])


def _queued(function: Function) -> int:
    return sum(len(queue) for queue in function.queues.values()) + sum(function.spilled.values())
