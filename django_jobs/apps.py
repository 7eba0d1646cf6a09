from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings


class DjangoJobsConfig(AppConfig):
    name = "django_jobs"
    verbose_name = "Gearman jobs"
    # Said here so a project without DEFAULT_AUTO_FIELD gets no warning (models.W042)
    # from an app whose only model is unmanaged and has no table.
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        """Import every app's worker modules so tasks are known by name in every process.

        ``GEARMAN_AUTODISCOVER = False`` leaves it to the worker command, for web
        processes that must not import task code.
        """
        from django_jobs import checks  # noqa: F401  (registers the system checks)

        if getattr(settings, "GEARMAN_AUTODISCOVER", True):
            from django_jobs.jobs.discovery import discover

            discover()
