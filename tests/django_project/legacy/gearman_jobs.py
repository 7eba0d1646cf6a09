"""A django-gearman style jobs module: ``@gearman_job(queue)`` and the bare form."""

from django_jobs import gearman_job


@gearman_job("math")
def add(a, b):
    return a + b


@gearman_job
def negate(a):
    return -a
