"""No tables: one unmanaged model, the handle the Django admin needs to list the jobs
dashboard in its index and to hold the permission its buttons ask for."""

from __future__ import annotations

from django.db import models


class Broker(models.Model):
    class Meta:
        managed = False
        default_permissions = ("view",)
        permissions = (("control_broker", "Can retry and drop failed jobs"),)
        verbose_name = "job broker"
        verbose_name_plural = "job brokers"
