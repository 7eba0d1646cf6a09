"""Background jobs written in the caller's own database transaction, when the brokers'
``--store`` is the project's PostgreSQL database (``GEARMAN_STORE_DATABASE``).

Inside ``transaction.atomic()`` on that database a background submission becomes a row
of the brokers' job table, written through Django's own connection: rolled back, it
never runs; committed, a broker hears of it (NOTIFY) and takes it over at once. Outside
a transaction, and for mule and farm messages (never stored), jobs go to a broker as
usual. The row's form is ``broker/transactional.py``'s.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import DatabaseError, connections

from broker import transactional
from broker.errors import BrokerError
from broker.gearman.client import JobHandle, JobRequest
from django_jobs.conf import FARM_PREFIX, MULE_FUNCTION, JobSettings


def in_store_transaction(settings: JobSettings, request: JobRequest) -> bool:
    """Whether this background job is written in the open transaction, not sent."""
    alias = settings.store_database
    return (
        alias is not None
        and connections[alias].in_atomic_block
        and not request.function.startswith((MULE_FUNCTION, FARM_PREFIX))
    )


def write_jobs(alias: str, requests: Sequence[JobRequest]) -> list[JobHandle]:
    """Insert ``requests`` in the transaction open on ``alias``; a job whose unique is
    already stored for its function coalesces onto it, as on a broker."""
    numbers = []
    try:
        with connections[alias].cursor() as cursor:
            for request in requests:
                unique = request.unique.encode()
                function = request.function.encode()
                cursor.execute(
                    transactional.INSERT,
                    {
                        "function": function,
                        "unique": unique,
                        "data": request.data,
                        "priority": int(request.priority) if request.rank is None else request.rank,
                        "run_at": request.at or 0.0,
                        "key": request.key.encode(),
                    },
                )
                row = cursor.fetchone()
                if row is None:
                    cursor.execute(transactional.EXISTING, (function, unique))
                    row = cursor.fetchone()
                numbers.append(row[0])
            cursor.execute(transactional.NOTIFY)
    except DatabaseError as exc:
        raise BrokerError(
            f"cannot write the job into the spoolgear_jobs table of database {alias!r} "
            f"(GEARMAN_STORE_DATABASE; has a broker run with this database as --store?): {exc}"
        ) from exc
    return [JobHandle(f"database:{alias}", f"spoolgear_jobs:{number}") for number in numbers]
