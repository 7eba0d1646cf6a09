"""Mules and farms: uWSGI's ``mule_msg`` / ``farm_msg`` / ``@mulefunc`` over the broker.

    farm_msg("thumbnails", {"path": "/media/a.jpg"})   # to the first free member
    mule_msg(b"reload-cache", mule_id=2)               # to mule 2 only

    @farm("thumbnails")
    def on_thumbnail_message(message): ...

    @mulefunc("thumbnails")           # calling it runs it on a farm member
    def make_thumbnail(path): ...

A ``gearman_worker --farm NAME`` process is a member of farm NAME;
``--mule ID`` makes it mule ID, which also takes messages for any mule. A
message is a transient background job (the broker keeps it in memory only, as
uWSGI's socket buffers did), delivered to exactly one member, whole (no 64 KiB
truncation: up to the broker's ``--max-packet-size``), any JSON-serialisable
value. Unlike uWSGI nothing is dropped silently: a full queue (the broker's
``--transient-max-queue``) raises ``QueueFull`` to the sender, and a member that
dies mid-message gives it back to the farm; a message for a farm or mule that no
process has served for the broker's ``--transient-grace`` raises ``NoConsumer``, as
uWSGI raises for one that does not exist. ``mule_id()`` is the ``--mule`` of this
process (0 when it is not a mule), as ``uwsgi.mule_id()``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from broker.errors import WorkFailed
from broker.gearman.client import JobHandle
from broker.uwsgi_compat.api import mule_id
from django_jobs.conf import MULE_FUNCTION, farm_function, job_settings, mule_function
from django_jobs.jobs.registry import RegisteredTask, find_task
from django_jobs.sending.client import Job
from django_jobs.sending.serialization import Call
from django_jobs.sending.submission import NoConsumer, QueueFull, submit_background
from django_jobs.task_api.tasks import TaskExecutor, task

__all__ = [
    "NoConsumer",
    "QueueFull",
    "farm",
    "farm_msg",
    "member_tasks",
    "mule_id",
    "mule_msg",
    "mulefunc",
    "mulemsg",
]

MessageHandler = Callable[[Any], Any]
_handlers: dict[str, MessageHandler] = {}


def mule_msg(message: Any, mule_id: int | None = None) -> JobHandle:
    """Send ``message`` to mule ``mule_id``, or to the first free mule."""
    return submit_background(Job(mule_function(mule_id), [message]), job_settings().client_servers)


def farm_msg(farm_name: str, message: Any) -> JobHandle:
    """Send ``message`` to the first free member of farm ``farm_name``."""
    return submit_background(
        Job(farm_function(farm_name), [message]), job_settings().client_servers
    )


def _handler_for(function: str) -> Callable[[MessageHandler], MessageHandler]:
    def register(handler: MessageHandler) -> MessageHandler:
        _handlers[function] = handler
        return handler

    return register


def farm(farm_name: str) -> Callable[[MessageHandler], MessageHandler]:
    """The function members of farm ``farm_name`` call with each plain message."""
    return _handler_for(farm_function(farm_name))


def mulemsg(mule_id: int | None = None) -> Callable[[MessageHandler], MessageHandler]:
    """The function mules call with each plain message (for mule ``mule_id`` only, or,
    without one, for any mule and for mules with no handler of their own)."""
    return _handler_for(mule_function(mule_id))


def mulefunc(target: int | str | Callable[..., Any] | None = None, **setup: Any) -> Any:
    """``@mulefunc``, ``@mulefunc(ID)`` or ``@mulefunc("farm")``: calling the function runs it
    on a mule (any, or mule ID) or a farm member: ``@task(executor=MULE)``."""
    if callable(target):
        return task(target, executor=TaskExecutor.MULE, **setup)
    where = {"farm": target} if isinstance(target, str) else {"mule": target}
    return task(executor=TaskExecutor.MULE, **where, **setup)


def _deliver(function: str, call: Call) -> Any:
    """Run one message: a ``@mulefunc``/MULE task call, or a plain message for a handler."""
    name = call.setup.get("task")
    if name is not None:
        target = find_task(name)
        if target is None:
            raise WorkFailed(f"a call of task {name!r}, which this project does not define")
        return target.execute(call)
    handler = _handlers.get(function)
    if handler is None and function.startswith(MULE_FUNCTION + "."):
        handler = _handlers.get(MULE_FUNCTION)
    if handler is None:
        raise WorkFailed(
            f"a message for {function}, which has no handler: decorate one with "
            "@farm(NAME) or @mulemsg()"
        )
    return handler(call.args[0])


def member_tasks(farms: Sequence[str], mule_id: int | None) -> list[RegisteredTask]:
    """What a ``gearman_worker --farm ... --mule ...`` process serves besides its tasks."""
    functions = [farm_function(name) for name in farms]
    if mule_id is not None:
        functions += [MULE_FUNCTION, mule_function(mule_id)]
    return [
        RegisteredTask(function, "mules", _deliver, functools.partial(_deliver, function))
        for function in functions
    ]
