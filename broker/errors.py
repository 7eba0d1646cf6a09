"""One exception root for the whole package.

Protocol errors (the peer broke the wire format) are kept apart from misuse of
the Python API and from errors a server reported, so callers can tell "the
bytes were wrong" from "we asked for something invalid" from "the server said no".
"""


class BrokerError(Exception):
    """Root of every exception raised by spoolgear."""


class ProtocolError(BrokerError):
    """Bytes received from a peer do not follow the Gearman or admin protocol.

    ``close`` says whether the connection must be dropped (gearmand closes on bad
    magic, unknown packet types and oversized lines) or can carry on after an
    ERROR packet with ``code`` and ``text``.
    """

    def __init__(self, message: str, *, code: bytes = b"", close: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.close = close


class ConfigurationError(BrokerError):
    """A setting or command-line value is invalid."""


class StoreUnavailable(BrokerError):
    """The job store cannot be opened or written; the text says why and what was left as it
    was. The broker refuses to start, or stops acknowledging and exits non-zero."""


class ServerError(BrokerError):
    """A server answered with an ERROR packet or an ``ERR`` admin line."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}" if text else code)
        self.code = code
        self.text = text


class ConnectionFailed(BrokerError):
    """No configured server could be reached, or a connection broke mid-request."""


class JobFailed(BrokerError):
    """A foreground job ended with WORK_FAIL (or was dropped after its retries)."""

    def __init__(self, handle: str) -> None:
        super().__init__(f"job {handle} failed")
        self.handle = handle


class JobException(JobFailed):
    """A foreground job ended with WORK_EXCEPTION; ``data`` is the worker's report."""

    def __init__(self, handle: str, data: bytes) -> None:
        super().__init__(handle)
        self.data = data
        self.args = (f"job {handle} raised: {data.decode('utf-8', 'replace')}",)


class JobTimeout(BrokerError, TimeoutError):
    """A client call did not finish within its timeout."""


class WorkFailed(BrokerError):
    """Raised by a task function to fail its job with this message as the report.

    The worker sends WORK_EXCEPTION without logging a traceback: the task has
    already said (or logged) what went wrong.
    """


class JobCancelled(BaseException):
    """Raised in a running job when the broker said it was cancelled (a worker's
    ``send_status`` or ``check_cancelled``). A ``BaseException``, as asyncio's
    ``CancelledError`` is, so that a task's ``except Exception`` does not swallow it."""

    def __init__(self, handle: str) -> None:
        super().__init__(f"job {handle} was cancelled")
        self.handle = handle


class RetryLater(WorkFailed):
    """Raised by a task function: this attempt failed with this message as the report,
    and the same job (same handle, one more attempt counted) runs again ``delay``
    seconds from now. spoolgear's own WORK_RETRY; a background job only (a foreground
    job fails as on ``WorkFailed``: its client is waiting)."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay
