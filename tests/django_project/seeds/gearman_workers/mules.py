"""uWSGI Mules docs (seeds/000): programmed mules and farms, ported to handlers that
``manage.py gearman_worker --mule N --farm NAME`` runs (a loop around
``uwsgi.mule_get_msg()`` becomes the loop's body)."""

from django_jobs.mules import farm, mule_id, mulemsg
from seeds.notes import note


@mulemsg(1)
def loop1(message):
    """somaro.py's loop1: ``message = uwsgi.mule_get_msg(); print message``."""
    note("loop1", message, mule_id())


@farm("busy")
def feed(message):
    """feed.py, run by mules 1 and 2 (``--farm=busy:1,2``)."""
    note("feed", message, mule_id())


@farm("idle")
def wallow(message):
    """wallow.py, run by mule 3 (``--farm=idle:3``)."""
    note("wallow", message, mule_id())
