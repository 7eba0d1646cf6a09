"""Mule and farm message handlers of the shop app; each appends a JSON line to $TICKS_FILE:
who got what (pid, the handler, the message or its length)."""

import json
import os

from django_jobs.mules import farm, mulefunc, mulemsg


def _note(handler, message):
    if isinstance(message, str) and len(message) > 100:
        message = {"length": len(message)}
    with open(os.environ["TICKS_FILE"], "a") as ticks:
        ticks.write(json.dumps({"pid": os.getpid(), "handler": handler, "message": message}) + "\n")


@farm("thumbs")
def on_thumbs_message(message):
    _note("farm thumbs", message)


@mulemsg()
def on_any_mule_message(message):
    _note("mule", message)


@mulefunc("thumbs")
def make_thumbnail(path, size=64):
    _note("make_thumbnail", [path, size])
