"""The architecture page's layout table names every module of the tree."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def test_every_module_is_named_in_the_architecture_page() -> None:
    layout = ARCHITECTURE.read_text()
    modules = [
        path
        for package in ("broker", "django_jobs")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "__init__.py" and not {"migrations", "management"} & set(path.parts)
    ]
    assert modules
    named = set(re.findall(r"[`/]([a-z_]+\.py)`", layout))
    missing = [str(p.relative_to(ROOT)) for p in modules if p.name not in named]
    assert not missing, f"modules docs/architecture.md does not name: {missing}"


def contract_modules() -> set[str]:
    """Every module or package an import-linter contract names as a source or a layer."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    named: set[str] = set()
    for contract in contracts["contracts"]:
        named.update(contract.get("source_modules", []))
        for layer in contract.get("layers", []):
            named.update(part.strip() for part in layer.split("|"))
    # A root package as a whole ("never imports the Django side") places none of its
    # modules: each must be named for itself or by its package.
    return named - set(contracts["root_packages"])


def test_every_module_is_under_an_import_contract() -> None:
    named = contract_modules()
    outside = []
    for package in ("broker", "django_jobs"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            dotted = [".".join(parts[:end]) for end in range(1, len(parts) + 1)]
            if parts[-1] != "__init__" and not named & set(dotted):
                outside.append(".".join(parts))
    assert outside == [], "give these a place in a [tool.importlinter] contract"


PUBLIC_PATHS = {
    "broker.client": "broker.gearman.client",
    "broker.worker": "broker.gearman.worker",
    "broker.admin": "broker.gearman.admin_client",
    "broker.uwsgidecorators": "broker.uwsgi_compat.decorators",
    "broker.uwsgi_api": "broker.uwsgi_compat.api",
    "broker.uwsgi_client": "broker.uwsgi_compat.spool_client",
    "django_jobs.client": "django_jobs.sending.client",
    "django_jobs.tasks": "django_jobs.task_api.tasks",
    "django_jobs.schedules": "django_jobs.task_api.schedules",
    "django_jobs.mules": "django_jobs.task_api.mules",
    "django_jobs.runner": "django_jobs.worker.runner",
    "django_jobs.uwsgi_tasks": "django_jobs.task_api.uwsgi_tasks",
}


def test_the_import_paths_users_write_are_the_modules_themselves() -> None:
    for public, home in PUBLIC_PATHS.items():
        assert importlib.import_module(public) is importlib.import_module(home), public
    from broker.admin import AdminClient
    from broker.client import Client, JobRequest
    from broker.uwsgi_api import spool
    from broker.uwsgidecorators import SPOOL_OK
    from broker.uwsgidecorators import spool as spool_decorator
    from broker.worker import Worker, WorkerJob

    assert {Client.__module__, JobRequest.__module__} == {"broker.gearman.client"}
    assert (Worker.__module__, WorkerJob.__module__) == ("broker.gearman.worker",) * 2
    assert AdminClient.__module__ == "broker.gearman.admin_client"
    assert callable(spool) and callable(spool_decorator) and SPOOL_OK == -2


def test_the_django_names_users_import_come_from_their_homes() -> None:
    from django_jobs.client import GearmanClient
    from django_jobs.mules import mule_msg, mulefunc
    from django_jobs.runner import current_job
    from django_jobs.schedules import cron, timer
    from django_jobs.tasks import TaskExecutor, task
    from django_jobs.uwsgi_tasks import SPOOL_OK, RetryTaskException

    assert GearmanClient.__module__ == "django_jobs.sending.client"
    assert (task.__module__, TaskExecutor.__module__) == ("django_jobs.task_api.tasks",) * 2
    assert (timer.__module__, cron.__module__) == ("django_jobs.task_api.schedules",) * 2
    assert (mulefunc.__module__, mule_msg.__module__) == ("django_jobs.task_api.mules",) * 2
    assert current_job.__module__ == "broker.gearman.steps"
    assert RetryTaskException.__module__ == "django_jobs.task_api.calls" and SPOOL_OK == -2
