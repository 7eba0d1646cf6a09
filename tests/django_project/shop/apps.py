import os

from django.apps import AppConfig

from django_jobs.signals import worker_stopping


def note_stop(sender: object, *, app: str, worker: str, reason: str, **kwargs: object) -> None:
    """Records the stop in $STOP_MARKER, so a test can see the receiver ran before exit."""
    marker = os.environ.get("STOP_MARKER")
    if marker:
        with open(marker, "a") as file:
            file.write(f"{app}.{worker} {reason}\n")


class ShopConfig(AppConfig):
    name = "shop"

    def ready(self) -> None:
        worker_stopping.connect(note_stop)
