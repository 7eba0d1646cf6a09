"""From a uWSGI spool request (a packet or a spool file) to the job it becomes.

uWSGI code hands the spooler a dict of byte vars plus an optional body. The
job keeps all of it: its payload is the request in spool-file form (header,
vars, body), so a handler later sees exactly the dict the uWSGI spooler would
have passed. What the broker itself reads from the vars
(docs/uwsgi.md, "From vars to a job"):

- the function: ``ud_spool_func`` (uwsgidecorators), else ``function_name``
  (uwsgi_tasks), else a configured default for plain dicts;
- ``spooler``: a named spooler, which is a queue: the job's function becomes
  ``FUNCTION@QUEUE`` and only workers serving that queue take it (``default`` is
  the unnamed queue; an address such as ``host:port`` is refused: uWSGI cannot
  spool to one either, send the request to that address instead);
- ``priority``: decimal digits, lower runs first (no ordered-mode flag needed);
  anything else is refused rather than used as a path;
- ``at``: epoch seconds (a fraction is ignored, as uWSGI does); the job does not
  start before then. A value that is not a number is refused.

Every refusal is a ``SpoolRefused`` with a sentence for the log.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.errors import ProtocolError
from broker.protocol.uwsgi import HEADER, SPOOL_MODIFIER, decode_vars

# The vars naming the handler, in the order they are looked for.
FUNCTION_KEYS = (b"ud_spool_func", b"function_name")
DEFAULT_SPOOL_FUNCTION = "uwsgi_spooler"
# Separates a function from its named spooler in the Gearman function name.
QUEUE_SEPARATOR = b"@"
# The name of the unnamed spooler, for ``spoolgear spooler --queue`` and the ``spooler`` var.
DEFAULT_QUEUE = "default"
# uWSGI names priority directories with digits; more than 999 levels helps nobody.
MAX_SPOOL_PRIORITY = 999
# Gearman function names travel NUL-separated; keep them printable and short.
MAX_NAME_LENGTH = 255


class SpoolRefused(ProtocolError):
    """The request cannot become a job; the sender gets ``ff 00 00 00``."""


@dataclass(frozen=True, slots=True)
class SpoolJob:
    function: bytes
    priority: int | None
    """The ``priority`` var's number, ``None`` when there is none."""
    when: float
    """Epoch seconds before which the job does not start; 0 = now."""
    payload: bytes
    """The request as a spool file: header, vars, body."""


def spool_job(block: bytes, body: bytes, *, default_function: bytes) -> SpoolJob:
    """The job for a vars ``block`` (and spool-file ``body``); ``SpoolRefused`` if unusable."""
    try:
        pairs = decode_vars(block)
    except ProtocolError as exc:
        raise SpoolRefused(f"malformed vars: {exc}") from None
    found = dict(pairs)
    name = _name(found, default_function)
    queue = found.get(b"spooler")
    if queue is not None and queue != DEFAULT_QUEUE.encode():
        if names_address(queue):
            raise SpoolRefused(
                f"spooler {queue[:60]!r} is an address, not a spooler's name: "
                "send the request to that address"
            )
        name += QUEUE_SEPARATOR + _checked_name(queue, "spooler")
    payload = HEADER.pack(SPOOL_MODIFIER, len(block), 0) + block + body
    return SpoolJob(name, _priority(found.get(b"priority")), _when(found.get(b"at")), payload)


def names_address(spooler: bytes) -> bool:
    """A ``spooler`` value that is ``HOST:PORT`` (a uwsgi socket), not a spooler's name or
    directory: uWSGI cannot spool to one, the drop-in ``spool()`` sends the request there."""
    return b":" in spooler and not spooler.startswith(b"/")


def _name(found: dict[bytes, bytes], default_function: bytes) -> bytes:
    for key in FUNCTION_KEYS:
        value = found.get(key)
        if value is not None:
            return _checked_name(value, key.decode())
    return default_function


def _checked_name(value: bytes, what: str) -> bytes:
    if not value or len(value) > MAX_NAME_LENGTH:
        raise SpoolRefused(f"{what} must be 1-{MAX_NAME_LENGTH} bytes, got {len(value)}")
    if not value.isascii() or not value.decode().isprintable() or QUEUE_SEPARATOR in value:
        raise SpoolRefused(
            f"{what} {value[:60]!r} must be printable ASCII without {QUEUE_SEPARATOR.decode()!r}"
        )
    return value


def _priority(value: bytes | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > 3 or int(value) > MAX_SPOOL_PRIORITY:
        raise SpoolRefused(
            f"priority {value[:60]!r} is not a number from 0 to {MAX_SPOOL_PRIORITY}"
        )
    return int(value)


def _when(value: bytes | None) -> float:
    if value is None:
        return 0.0
    whole, _, fraction = value.partition(b".")
    if not whole.isdigit() or (fraction and not fraction.isdigit()) or len(whole) > 18:
        raise SpoolRefused(f"at {value[:60]!r} is not epoch seconds")
    return float(int(whole))
