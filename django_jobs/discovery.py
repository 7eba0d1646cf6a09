"""Finds and imports each app's worker modules: ``APP/gearman_workers/WORKER.py`` (jbox),
and django-gearman's single ``APP/gearman_jobs.py``, listed as worker ``gearman_jobs``.

An import error inside a worker module is raised with its traceback: a
worker that silently serves nothing ("No gearman modules found!") is worse.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass

from django.apps import AppConfig, apps
from django.core.exceptions import ImproperlyConfigured

from django_jobs.registry import LEGACY_JOBS_MODULE, WORKERS_PACKAGE, Task, tasks_of_module


@dataclass(frozen=True)
class WorkerModule:
    app: str
    """The app's label, as ``gearman_worker -a`` takes it."""
    worker: str
    """The module's short name, as ``gearman_worker -n`` takes it."""
    module: str

    def tasks(self) -> list[Task]:
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
    found = []
    package = f"{app_config.name}.{WORKERS_PACKAGE}"
    if _exists(package):
        spec = importlib.util.find_spec(package)
        locations = spec.submodule_search_locations if spec is not None else None
        for info in pkgutil.iter_modules(list(locations or [])):
            if not info.name.startswith("_"):
                found.append(WorkerModule(app_config.label, info.name, f"{package}.{info.name}"))
    legacy = f"{app_config.name}.{LEGACY_JOBS_MODULE}"
    if _exists(legacy):
        found.append(WorkerModule(app_config.label, LEGACY_JOBS_MODULE, legacy))
    return sorted(found, key=lambda worker: worker.worker)


def import_worker(worker: WorkerModule) -> None:
    try:
        importlib.import_module(worker.module)
    except Exception as exc:
        raise WorkerImportError(f"cannot import worker module {worker.module}: "
                                f"{type(exc).__name__}: {exc} (its traceback is above)") from exc


def discover() -> list[WorkerModule]:
    """Import every worker module of every installed app; returns them all."""
    workers = [worker for config in apps.get_app_configs() for worker in worker_modules(config)]
    for worker in workers:
        import_worker(worker)
    return workers
