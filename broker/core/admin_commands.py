"""The admin text protocol: each command line in, its complete reply out.

Replies are gearmand 1.1.20's byte for byte, including the mix of line endings
(tables end with ``.\\n``, OK/ERR to mutating commands with ``\\r\\n``, ``OK
<value>`` with ``\\n``) and its error texts. New commands (``shutdown``, ``show
schedules``, ``show failed``, ``retry failed``, ``drop failed``, ``show result``) only add
replies; no existing reply changes. ``show result HANDLE`` answers with one JSON line (a
result holds free text and bytes, which tab-separated fields cannot), ``show results
[FUNCTION]`` with one per kept result, newest first, without the value and payload;
``show waiting`` lists the jobs that wait for others (chains and groups):
``HANDLE\\tFUNCTION\\tMODE\\tENDED\\tOF``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from broker.core import flow_commands
from broker.core.access import LOOPBACK, Allowed, is_control
from broker.core.broker import Broker
from broker.core.model import Session
from broker.core.results import JobState, kept_state, live_state, state_json, stored_state
from broker.core.workflows import after_handles, parse_after
from broker.errors import ProtocolError, StoreUnavailable
from broker.protocol.numbers import leading_int
from broker.protocol.priorities import Priority
from broker.store.base import SharedStore

# gearmand closes the connection on a line with more than five tokens.
MAX_ADMIN_TOKENS = 5
SERVER_VERSION = b"1.1.20+spoolgear.0.1.0"

OK_CRLF = b"OK\r\n"
_INCOMPLETE = b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+"


def _unknown(word: bytes) -> bytes:
    return b"ERR UNKNOWN_COMMAND Unknown+server+command" + word + b"\r\n"


def _one_line(text: str) -> bytes:
    """An error text fit for one tab-separated field."""
    return " ".join(text.split()).encode("utf-8", "replace")


def tokenize(line: bytes) -> list[bytes]:
    """Split on spaces, collapsing runs; a leading space leaves an empty first word."""
    words = line.split(b" ")
    return [word for index, word in enumerate(words) if word or index == 0]


log = logging.getLogger("spoolgear.admin")


class AdminCommands:
    """Runs admin commands against a broker.

    ``request_shutdown(graceful)`` is called for the ``shutdown`` commands; ``verbose``
    is the log level name reported by ``verbose``. Control commands (``access.py``) run
    only for peers in ``control_from`` (loopback unless ``--admin-allow`` says otherwise)
    and for TLS peers whose certificate carries one of ``control_names``.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        verbose: str,
        request_shutdown: Callable[[bool], None],
        control_from: Allowed = LOOPBACK,
        control_names: frozenset[str] = frozenset(),
        shared: SharedStore | None = None,
    ) -> None:
        self.broker = broker
        self.shared = shared
        """A store several brokers share: ``show brokers`` and the failed list read it."""
        self.control_from = control_from
        self.control_names = control_names
        default = control_from.networks == LOOPBACK.networks
        self._control_rule = b"loopback" if default else b"--admin-allow+networks"
        if control_names:
            self._control_rule += b"+or+--admin-allow-name+certificates"
        self.verbose = verbose.upper().encode()
        self.request_shutdown = request_shutdown
        self._commands: dict[bytes, Callable[[Session, list[bytes]], bytes]] = {
            b"status": self._status,
            b"prioritystatus": self._priority_status,
            b"workers": self._workers,
            b"version": lambda s, w: b"OK " + SERVER_VERSION + b"\n",
            b"verbose": lambda s, w: b"OK " + self.verbose + b"\n",
            b"getpid": lambda s, w: b"OK %d\n" % os.getpid(),
            b"show": self._show,
            b"cancel": self._cancel,
            b"maxqueue": self._maxqueue,
            b"create": self._create,
            b"drop": self._drop,
            b"retry": self._retry,
            b"shutdown": self._shutdown,
            b"pause": lambda s, w: flow_commands.pause(self.broker.flow, w, True),
            b"resume": lambda s, w: flow_commands.pause(self.broker.flow, w, False),
            b"limit": lambda s, w: flow_commands.limit(self.broker.flow, w),
        }

    def run(self, session: Session, line: bytes) -> bytes:
        words = tokenize(line)
        if len(words) > MAX_ADMIN_TOKENS:
            raise ProtocolError(f"admin line with more than {MAX_ADMIN_TOKENS} words")
        command = self._commands.get(words[0].lower())
        if command is None:
            return _unknown(words[0])
        if is_control(words) and not self._may_control(session):
            log.warning(
                "refused admin command %r from %s: control commands are only accepted from %s",
                b" ".join(words).decode("utf-8", "replace"),
                session.host,
                self._control_rule.decode().replace("+", " "),
            )
            name = words[0].lower()
            return b"ERR PERMISSION_DENIED %s+is+only+accepted+from+%s\r\n" % (
                name,
                self._control_rule,
            )
        try:
            return command(session, words)
        except StoreUnavailable as exc:
            return b"ERR STORE_UNAVAILABLE %s\r\n" % _one_line(str(exc)).replace(b" ", b"+")

    def _may_control(self, session: Session) -> bool:
        if session.host in self.control_from:
            return True
        return not self.control_names.isdisjoint(session.names)

    def _status(self, session: Session, words: list[bytes]) -> bytes:
        lines = [
            b"%s\t%d\t%d\t%d\n" % (f.name, f.total, f.running, len(f.workers))
            for f in self.broker.functions.by_name.values()
        ]
        lines.append(b".\n")
        return b"".join(lines)

    def _priority_status(self, session: Session, words: list[bytes]) -> bytes:
        lines = []
        for f in self.broker.functions.by_name.values():
            high, normal, low = [f.waiting(priority) for priority in Priority]
            lines.append(
                b"%s\t%d\t%d\t%d\t%d\n" % (f.name, high, normal + f.delayed, low, len(f.workers))
            )
        lines.append(b".\n")
        return b"".join(lines)

    def _workers(self, session: Session, words: list[bytes]) -> bytes:
        lines = []
        for peer in reversed(self.broker.sessions.values()):
            names = b"".join([b" " + f.name for f in peer.abilities])
            lines.append(b"%d %s %s :%s\n" % (peer.fd, peer.host.encode(), peer.client_id, names))
        lines.append(b".\n")
        return b"".join(lines)

    def _show(self, session: Session, words: list[bytes]) -> bytes:
        what = [word.lower() for word in words[1:]]
        if not what:
            return _unknown(words[0])
        if what == [b"jobs"]:
            lines = [
                b"%s\t%d\t%d\t%d\n" % (job.handle, job.retries, job.ignored, job.background)
                for job in self.broker.index.jobs.values()
            ]
        elif what == [b"unique", b"jobs"]:
            lines = [job.unique + b"\n" for job in self.broker.index.jobs.values()]
        elif what == [b"brokers"]:
            return self._brokers()
        elif what == [b"limits"]:
            return flow_commands.show_limits(self.broker.flow)
        elif what == [b"waiting"]:
            lines = [
                b"%s\t%s\t%s\t%d\t%d\n"
                % (job.handle, job.function.name, mode, len(numbers) - job.waiting, len(numbers))
                for job in self.broker.index.jobs.values()
                if job.waiting
                for mode, numbers in [parse_after(job.after)]
            ]
        elif len(what) == 2 and what[0] == b"result":
            return self._result(words[2])
        elif what[0] == b"results" and len(what) <= 2:
            function = words[2] if len(words) > 2 else None
            lines = [
                state_json(kept_state(handle, kept), with_bytes=False) + b"\n"
                for handle, kept in self.broker.results.newest(function)
            ]
        elif what == [b"failed"]:
            self._reload_failed()
            lines = [
                b"%s\t%s\t%d\t%d\t%s\n"
                % (handle, f.function, f.attempts, f.failed_at, _one_line(f.error))
                for handle, f in self.broker.failed.items()
            ]
        elif what == [b"schedules"]:
            lines = [
                b"%s\t%s\t%s\t%s\t%d\t%d\n"
                % (s.handle, s.function, s.unique, s.spec.text.encode(), s.next_run, s.fired)
                for s in self.broker.scheduler.schedules.values()
            ]
        else:
            return b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"
        lines.append(b".\n")
        return b"".join(lines)

    def _result(self, handle: bytes) -> bytes:
        """``show result HANDLE``: the job's state or kept result as one JSON line."""
        state = self._job_state(handle)
        if state is None:
            return b"ERR UNKNOWN_JOB\r\n"
        return state_json(state) + b"\n.\n"

    def _job_state(self, handle: bytes) -> JobState | None:
        """A live job, then a kept result, then a job in the store, by this broker's
        handle (with a shared store, the one it gives any handle's number too), then
        another broker's job or kept result in a shared store."""
        broker = self.broker
        for mine in (handle, broker.other_brokers.own_handle(handle)):
            if mine is None:
                continue
            job = broker.index.jobs.get(mine)
            if job is not None:
                return live_state(handle, job, after_handles(broker.handles, job))
            kept = broker.results.find(mine)
            if kept is not None:
                return kept_state(handle, kept)
            stored = broker.pager.find(mine)
            if stored is not None:
                return stored_state(handle, stored)
        stored = broker.other_brokers.job(handle)
        if stored is not None:
            return stored_state(handle, stored)
        kept = broker.other_brokers.result(handle)
        return None if kept is None else kept_state(handle, kept)

    def _brokers(self) -> bytes:
        if self.shared is None:
            return b"ERR NO_SHARED_STORE this+broker's+store+is+not+shared+with+other+brokers\r\n"
        lines = [
            b"%d\t%s\t%s\t%d\t%d\n"
            % (row.id, row.name.encode(), row.state.encode(), row.jobs, row.running)
            for row in self.shared.brokers()
        ]
        return b"".join(lines) + b".\n"

    def _reload_failed(self) -> None:
        """With a shared store the failed list is every broker's: read it from there."""
        if self.shared is not None:
            handle = self.broker.handles.of
            self.broker.failed.reload([(handle(r.number), r) for r in self.shared.failed_jobs()])

    def _cancel(self, session: Session, words: list[bytes]) -> bytes:
        if len(words) < 3:
            return _unknown(words[0])
        if len(words) > 3 or words[1].lower() != b"job":
            return b"ERR UNKNOWN_ERROR\r\n"
        return OK_CRLF if self.broker.cancel(words[2]) else b"ERR UNKNOWN_JOB\r\n"

    def _maxqueue(self, session: Session, words: list[bytes]) -> bytes:
        if len(words) < 2:
            return _INCOMPLETE + words[0] + b"\r\n"
        function = self.broker.functions.by_name.get(words[1])
        if function is not None:
            function.kept = True  # an operator's setting: never forgotten as idle
            limits = [max(0, leading_int(word)) for word in words[2:]]
            if not limits:
                function.max_queue = [0, 0, 0]
            elif len(limits) == 1:
                function.max_queue = limits * 3
            else:
                function.max_queue = [*limits, 0, 0][:3]
        return OK_CRLF

    def _create(self, session: Session, words: list[bytes]) -> bytes:
        if len(words) != 3 or words[1].lower() != b"function":
            return _INCOMPLETE + words[0] + b"\r\n"
        self.broker.functions.get(words[2]).kept = True
        return OK_CRLF

    def _retry(self, session: Session, words: list[bytes]) -> bytes:
        if len(words) != 3 or words[1].lower() != b"failed":
            return _INCOMPLETE + words[0] + b"\r\n"
        self._reload_failed()
        return self._on_failed(self.broker.retry_failed, words[2])

    @staticmethod
    def _on_failed(action: Callable[[bytes | None], int], target: bytes) -> bytes:
        """``retry failed`` / ``drop failed``: HANDLE or ``all``; OK with the count."""
        if target.lower() == b"all":
            return b"OK %d\r\n" % action(None)
        return b"OK 1\r\n" if action(target) else b"ERR UNKNOWN_JOB\r\n"

    def _drop(self, session: Session, words: list[bytes]) -> bytes:
        if len(words) == 3 and words[1].lower() == b"failed":
            self._reload_failed()
            return self._on_failed(self.broker.failed.drop, words[2])
        if len(words) != 3 or words[1].lower() != b"function":
            return _INCOMPLETE + words[0] + b"\r\n"
        function = self.broker.functions.by_name.get(words[2])
        if function is None:
            return b"ERR function not found\r\n"
        # Unlike gearmand, queued jobs also keep a function alive (it would orphan them).
        if function.workers or function.total:
            return b"ERR there are still connected workers or executing clients\r\n"
        self.broker.functions.remove(function)
        return OK_CRLF

    def _shutdown(self, session: Session, words: list[bytes]) -> bytes:
        graceful = len(words) > 1 and words[1].lower() == b"graceful"
        self.request_shutdown(graceful)
        return OK_CRLF
