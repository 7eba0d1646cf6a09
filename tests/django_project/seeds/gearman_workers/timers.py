"""uwsgi_tasks README (seeds/002): "Timers, red-black timers and cron" and ``add_setup``.

Ported: the import, ``print`` became ``note``; the second ``print_every_5_seconds`` got
its own name (two functions under one name are refused: uWSGI kept both timers
while the name pointed at the second); lazy timers arm with 1 s instead of 10 s.
"""

from django_jobs.uwsgi_tasks import cron, cron_lazy, timer, timer_lazy
from seeds.notes import note


@timer(seconds=5)
def print_every_5_seconds(signal_number):
    """Prints string every 5 seconds

    Keep in mind: task is created on initialization.
    """
    note("Task for signal", signal_number)


@timer(seconds=5, iterations=3, target="workers")
def print_every_5_seconds_3_times(signal_number):
    """Prints string every 5 seconds 3 times"""
    note("Task with iterations for signal", signal_number)


@timer_lazy(seconds=5)
def print_every_5_seconds_after_call(signal_number):
    """Prints string every 5 seconds"""
    note("Lazy task for signal", signal_number)


@cron(minute=-2)
def print_every_2_minutes(signal_number):
    note("Cron task:", signal_number)


@cron_lazy(minute=-2, target="mule")
def print_every_2_minutes_after_call(signal_number):
    note("Cron task:", signal_number)


@timer_lazy(target="worker")
def run_me_periodically(signal):
    note("Running with signal:", signal)
