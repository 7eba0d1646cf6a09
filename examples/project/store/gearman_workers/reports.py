"""Scheduled tasks: kept by the broker, so each firing runs once however many workers run."""

from django.conf import settings
from django.utils import timezone

from django_jobs.schedules import cron, timer


def _append(name: str, line: str) -> None:
    reports = settings.RUN_DIR / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    with open(reports / name, "a") as file:
        file.write(line + "\n")


@cron(minute=0, hour=-1)
def hourly_sales_report() -> None:
    """At the top of every hour (uWSGI's numbers: -1 any, -N every N)."""
    _append("sales.log", f"sales report at {timezone.now():%Y-%m-%d %H:%M}")


@timer(seconds=2)
def refresh_stock_levels(signum: int) -> None:
    """Every two seconds; a uWSGI signal handler's signature still works."""
    _append("stock.log", f"stock levels refreshed at {timezone.now():%H:%M:%S}")
