"""Finds and imports each app's worker modules: ``APP/gearman_workers/WORKER.py`` (jbox),
django-gearman's single ``APP/gearman_jobs.py`` and the ``APP/tasks.py`` of uwsgi_tasks and
Celery projects, listed as workers ``gearman_jobs`` and ``tasks``.

An import error inside a worker module is raised with its traceback: a
worker that silently serves nothing ("No gearman modules found!") is worse.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass

from django.apps import AppConfig, apps
from django.core.exceptions import ImproperlyConfigured

from django_jobs.jobs.registry import (
    LEGACY_JOBS_MODULE,
    WORKERS_PACKAGE,
    RegisteredTask,
    tasks,
    tasks_of_module,
)

# Modules of an app, besides its gearman_workers package, that are one worker each.
SINGLE_MODULES = (LEGACY_JOBS_MODULE, "tasks")


@dataclass(frozen=True)
class WorkerModule:
    app: str
    """The app's label, as ``gearman_worker -a`` takes it."""
    worker: str
    """The module's short name, as ``gearman_worker -n`` takes it."""
    module: str

    def tasks(self) -> list[RegisteredTask]:
        return tasks_of_module(self.module)


class WorkerImportError(ImproperlyConfigured):
    """A worker module exists but raised while being imported."""


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # the app's package itself cannot be imported
        return False


def worker_modules(app_config: AppConfig) -> list[WorkerModule]:
    """The worker modules an app has, by name, without importing them."""
    if app_config.name == __name__.partition(".")[0]:  # django_jobs: its tasks.py is the @task API
        return []
    found = []
    package = f"{app_config.name}.{WORKERS_PACKAGE}"
    if _exists(package):
        spec = importlib.util.find_spec(package)
        locations = spec.submodule_search_locations if spec is not None else None
        for info in pkgutil.iter_modules(list(locations or [])):
            if not info.name.startswith("_"):
                found.append(WorkerModule(app_config.label, info.name, f"{package}.{info.name}"))
    for single in SINGLE_MODULES:
        module = f"{app_config.name}.{single}"
        if _exists(module):
            found.append(WorkerModule(app_config.label, single, module))
    return sorted(found, key=lambda worker: worker.worker)


def all_worker_modules() -> list[WorkerModule]:
    return [worker for config in apps.get_app_configs() for worker in worker_modules(config)]


@functools.cache
def _served_modules() -> frozenset[str]:
    return frozenset(worker.module for worker in all_worker_modules())


def unserved_tasks() -> list[RegisteredTask]:
    """Registered tasks in modules that no ``gearman_worker -a APP -n WORKER`` loads: a
    call would queue a job nobody takes."""
    return [task for task in tasks() if task.module not in _served_modules()]


def check_served(task: RegisteredTask) -> None:
    """Refuse to queue a call of a task that no worker command would load."""
    check_module_served(task.name, task.module)


def check_module_served(name: str, module: str) -> None:
    """Refuse to queue a call of task ``name`` of ``module`` if no worker loads it."""
    if module not in _served_modules():
        raise ImproperlyConfigured(unserved_message(name, module))


def unserved_message(name: str, module: str) -> str:
    return (
        f"task {name!r} is defined in {module}, which no `manage.py "
        f"gearman_worker` loads, so its jobs would never run: move it "
        f"to APP/tasks.py or APP/gearman_workers/WORKER.py of an installed app"
    )


def import_worker(worker: WorkerModule) -> None:
    try:
        importlib.import_module(worker.module)
    except Exception as exc:
        raise WorkerImportError(
            f"cannot import worker module {worker.module}: "
            f"{type(exc).__name__}: {exc} (its traceback is above)"
        ) from exc


def discover() -> list[WorkerModule]:
    """Import every worker module of every installed app; returns them all."""
    workers = all_worker_modules()
    for worker in workers:
        import_worker(worker)
    return workers
