"""RQ: a queue on Redis, and the worker script RQ's docs recommend for speed, which imports
Django and the job's module before it starts forking work horses (``python -m
marks.rq_jobs``)."""

import os

from redis import Redis
from rq import Queue, Worker

from marks.record import record

queue = Queue("default", connection=Redis.from_url(os.environ["BENCH_REDIS"]))


def touch(stamp: float) -> None:
    record(stamp)


if __name__ == "__main__":
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peersite.settings")
    django.setup()
    from marks.rq_jobs import queue as imported_queue  # the module jobs name, not __main__

    Worker([imported_queue], connection=imported_queue.connection).work()
