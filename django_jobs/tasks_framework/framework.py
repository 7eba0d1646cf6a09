"""The Tasks framework's names, from Django itself (6.0 and later) or from the django-tasks
backport, whichever is installed: the two have the same modules and the same names."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured


def _framework() -> str:
    for name in ("django.tasks", "django_tasks"):
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        return name
    raise ImproperlyConfigured(
        "spoolgear's tasks backend needs Django's Tasks framework: Django 6.0 or later, or "
        "the django-tasks backport (pip install 'spoolgear[tasks]')"
    )


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{FRAMEWORK}.{name}")


FRAMEWORK = _framework()

if TYPE_CHECKING:
    from django_tasks import task_backends
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
    from django_tasks.exceptions import InvalidTaskBackendError as InvalidTaskBackend
    from django_tasks.exceptions import InvalidTaskError as InvalidTask
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started
    from django_tasks.utils import get_exception_traceback, get_module_path, normalize_json
else:
    task_backends = importlib.import_module(FRAMEWORK).task_backends
    BaseTaskBackend = _module("backends.base").BaseTaskBackend
    _base = _module("base")
    Task, TaskContext, TaskError = _base.Task, _base.TaskContext, _base.TaskError
    TaskResult, TaskResultStatus = _base.TaskResult, _base.TaskResultStatus
    _exceptions = _module("exceptions")
    TaskResultDoesNotExist = _exceptions.TaskResultDoesNotExist
    # Django 6's names, then the backport's (until its next release renames them).
    InvalidTaskBackend = getattr(
        _exceptions, "InvalidTaskBackend", getattr(_exceptions, "InvalidTaskBackendError", None)
    )
    InvalidTask = getattr(
        _exceptions, "InvalidTask", getattr(_exceptions, "InvalidTaskError", None)
    )
    _signals = _module("signals")
    task_enqueued = _signals.task_enqueued
    task_started, task_finished = _signals.task_started, _signals.task_finished
    _utils = _module("utils")
    get_exception_traceback = _utils.get_exception_traceback
    get_module_path, normalize_json = _utils.get_module_path, _utils.normalize_json

__all__ = [
    "BaseTaskBackend",
    "InvalidTask",
    "InvalidTaskBackend",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "get_exception_traceback",
    "get_module_path",
    "normalize_json",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]
