"""Celery as its Django guide sets it up: settings under ``CELERY_``, the worker loading
Django (``celery -A marks.celery_app worker``)."""

import os

from celery import Celery

from marks.record import record

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peersite.settings")
app = Celery("marks")
app.config_from_object("django.conf:settings", namespace="CELERY")


@app.task
def touch(stamp: float) -> None:
    record(stamp)
