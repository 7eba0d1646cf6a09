"""Dramatiq with its Redis broker; the worker (``dramatiq marks.dramatiq_actors``) loads
Django when it imports this module."""

import os

import django
import dramatiq
from django.apps import apps
from dramatiq.brokers.redis import RedisBroker

from marks.record import record

if not (apps.ready or apps.loading):  # the worker imports this module first
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peersite.settings")
    django.setup()
dramatiq.set_broker(RedisBroker(url=os.environ["BENCH_REDIS"]))


@dramatiq.actor
def touch(stamp: float) -> None:
    record(stamp)
