"""The benchmark app: it imports the benchmarked system's task module when Django starts,
as a project's own task modules are, so each system's worker finds the task."""

from importlib import import_module

from django.apps import AppConfig
from django.conf import settings

TASK_MODULES = {
    "jbox": "marks.gearman_workers.touch",
    "task-api": "marks.gearman_workers.api",
    "tasks-framework": "marks.gearman_workers.framework",
    "django-tasks-db": "marks.gearman_workers.framework",
    "celery": "marks.celery_app",
    "rq": "marks.rq_jobs",
    "dramatiq": "marks.dramatiq_actors",
    "huey-redis": "marks.huey_tasks",
    "huey-sqlite": "marks.huey_tasks",
    "procrastinate": "marks.procrastinate_tasks",
}


class MarksConfig(AppConfig):
    name = "marks"

    def ready(self) -> None:
        import_module(TASK_MODULES[settings.SYSTEM])
