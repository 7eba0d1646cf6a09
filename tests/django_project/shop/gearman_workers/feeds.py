"""``@task`` functions (the uwsgi_tasks API) of the shop app."""

import json
from pathlib import Path

from django_jobs.tasks import RetryTaskException, get_current_task, task


@task(retry_count=3, retry_timeout=0.2, retry_backoff=2)
def flaky(report):
    """Fails twice, keeping what each attempt saw in the buffer, then reports it."""
    current = get_current_task()
    current.buffer.setdefault("attempts", []).append(current.attempt)
    if current.attempt < 3:
        raise RetryTaskException()
    Path(report).write_text(json.dumps(current.buffer))


@task(retry_count=1, retry_timeout=0)
def broken_feed(url):
    raise ValueError(f"broken feed {url}")


def _note_where_we_are(path):
    current = get_current_task()
    with open(path, "a") as file:
        file.write(f"{current.task.name} {current.attempt} {current.args}\n")


@task
def countdown(n, path):
    """Re-enqueues itself by calling the current task, from a helper two frames down."""
    _note_where_we_are(path)
    if n > 0:
        get_current_task()(n - 1, path)


@task
def double(n):
    return n * 2


@task(retry_count=1, retry_timeout=0)
def add_after_a_failure(previous, n, marker):
    """A chain's step: fails its first attempt (noting it in ``marker``), then adds ``n``
    to what the step before returned."""
    path = Path(marker)
    if not path.exists():
        path.write_text("failed once")
        raise ValueError("the first attempt fails")
    return previous + n
