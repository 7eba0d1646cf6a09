"""uwsgi_tasks README (seeds/002): the ``@task`` examples, in ``APP/tasks.py`` as its
project layout has them (``gearman_worker -a seeds -n tasks`` serves them).

Ported: ``from uwsgi_tasks import ...`` became ``from django_jobs.uwsgi_tasks import ...``,
``print`` became ``note``, and waits of 5-20 s became 1 s so the tests stay short.
"""

import datetime
import logging
import os
from functools import wraps

from django.core.mail import send_mail

from django_jobs.uwsgi_tasks import (
    SPOOL_OK,
    SPOOL_RETRY,
    RetryTaskException,
    TaskExecutor,
    get_current_task,
    task,
)
from seeds.notes import note

logger = logging.getLogger(__name__)


@task(executor=TaskExecutor.SPOOLER)
def send_email_async(subject, body, email_to):
    # Execute task asynchronously on first available spooler
    return send_mail(subject, body, "noreply@domain.com", [email_to])


def task_wrapper(func):
    @wraps(func)  # required!
    def _inner(*args, **kwargs):
        note("Task started with parameters:", args, kwargs)
        try:
            func(*args, **kwargs)
        except Exception as ex:  # example
            note("Exception is occurred", str(ex), "repeat the task")
            return SPOOL_RETRY

        note("Task ended", func.__name__)
        return SPOOL_OK

    return _inner


@task(executor=TaskExecutor.SPOOLER, retry_count=3, retry_timeout=1)
@task_wrapper
def spooler_task(text):
    note("Hello, spooler! text =", text)
    raise Exception("Sorry, task failed!")


@task(executor=TaskExecutor.SPOOLER, retry_count=2)
def process_purchase(order_id):
    try:
        # make something with order id
        note("process_purchase", order_id)
        raise LookupError(f"no order {order_id}")
    except Exception:
        logging.exception("Something bad happened")
        # retry task in 1 (README: 10) seconds
        raise RetryTaskException(timeout=1) from None


@task(executor=TaskExecutor.SPOOLER)
def retry_with_count(order_id):
    """The README's warning: "providing count ... may lead to infinite tasks execution"."""
    note("retry_with_count", order_id, get_current_task().attempt)
    raise RetryTaskException(count=2, timeout=0)


@task(executor=TaskExecutor.SPOOLER, priority="5")
def low_priority_digits(text):
    """``priority`` is a "string ... so you can simply use digits"."""
    note("low_priority_digits", text)


def select_file_for_removal(previous_selected_file):
    names = sorted(os.listdir(os.environ["SEEDS_DIR"]))
    later = [
        name
        for name in names
        if previous_selected_file is None or name > os.path.basename(previous_selected_file)
    ]
    return os.path.join(os.environ["SEEDS_DIR"], later[0]) if later else None


def del_file(path):
    os.remove(path)


@task(executor=TaskExecutor.SPOOLER, at=datetime.timedelta(seconds=1))
def remove_files_sequentially(previous_selected_file=None):
    # get current SpoolerTask object
    current_task = get_current_task()
    note("remove_files_sequentially", previous_selected_file)

    selected_file = select_file_for_removal(previous_selected_file)

    # we should stop the task here
    if selected_file is None:
        logger.info("All files were removed")
        note("results", sorted(current_task.buffer["results"]))
        note("errors", current_task.buffer["errors"])
        return

    try:
        logger.info('Removing the file "%s"', selected_file)
        # ... remove the file ...
        del_file(selected_file)
    except OSError as ex:  # README: IOError, the same class since Python 3.3
        logger.exception('Cannot delete file "%s"', selected_file)

        # let's try to remove this one more time later
        io_errors = current_task.buffer.setdefault("errors", {}).get(selected_file)
        if not io_errors:
            current_task.buffer["errors"][selected_file] = str(ex)
            current_task.at = datetime.timedelta(seconds=1)  # README: 20
            return current_task(previous_selected_file)

    # save datetime of removal
    current_task.buffer.setdefault("results", {})[selected_file] = datetime.datetime.now()

    # run in async mode
    return current_task(selected_file)
