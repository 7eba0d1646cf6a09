"""Gearman jobs for Django: ``gearman_workers`` packages, the worker and server-info commands,
and a client, running on spoolgear or gearmand.

Importing this package imports nothing from Django's app registry: workers are
discovered in ``AppConfig.ready()`` (see ``django_jobs.apps``).
"""

from django_jobs.jobs.registry import gearman_job, gearman_task

__all__ = ["gearman_job", "gearman_task"]
