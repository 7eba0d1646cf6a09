"""Jobs an application writes to a shared PostgreSQL store in its own transaction.

A row without an owner in ``spoolgear_jobs`` is a job no broker holds yet: the brokers
take such rows over (``store/pg_leases.py``) when ``NOTIFY`` on ``CHANNEL`` tells them
one was committed, or at their next sweep. Rolled back, the row and the notification
never existed. This module is the whole agreement between the application side
(``django_jobs/sending/transactional.py``) and the store (``store/pg_schema.py`` creates the
numbers' sequence), so neither reaches into the other.
"""

from __future__ import annotations

CHANNEL = "spoolgear_jobs"
"""The channel brokers LISTEN on for jobs committed by applications."""

NUMBER_BITS = 40
"""Job numbers (a handle's digits) below ``1 << NUMBER_BITS`` are applications'; broker
``n`` gives out ``n << NUMBER_BITS`` onwards, so handles are unique without a shared
counter and one broker run has 2^40 of them."""

NUMBERS = "spoolgear_app_numbers"
"""The sequence giving applications' jobs their numbers."""

INSERT = (
    "INSERT INTO spoolgear_jobs (number, function, unique_key, data, priority, run_at,"
    f" reducer, attempts, running, seq, owner, concurrency_key) SELECT nextval('{NUMBERS}'),"
    " %(function)s, %(unique)s, %(data)s, %(priority)s, %(run_at)s, '', 0, false, 0, NULL,"
    " %(key)s"
    " ON CONFLICT DO NOTHING RETURNING number"
)
"""One job; with a unique already stored for that function, nothing (it coalesces: the
store's unique index on function and unique, as for the brokers' own jobs)."""

EXISTING = "SELECT number FROM spoolgear_jobs WHERE function = %s AND unique_key = %s LIMIT 1"
"""The stored job a submission with a unique coalesced onto."""

NOTIFY = f"NOTIFY {CHANNEL}"
