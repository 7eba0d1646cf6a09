"""The task both backends run: return the argument."""

from django_tasks import task


@task
def echo(n: int) -> int:
    return n
