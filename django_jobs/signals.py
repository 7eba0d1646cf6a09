"""Signals a ``gearman_worker`` process sends, for user code to hook into.

``worker_started(app, worker, tasks)``: registered with the servers, about to take jobs.
``worker_stopping(app, worker, reason)``: about to exit; ``reason`` is "signal",
"max_jobs" or "max_memory". The place for what jbox's README asked you to
add by editing line 116 of its command.
"""

from django.dispatch import Signal

worker_started = Signal()
worker_stopping = Signal()
