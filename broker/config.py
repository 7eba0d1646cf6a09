"""One validated configuration object for the broker, built by the CLI (and later Django).

Every limit has a name, a default and a command-line option; see README "Limits".
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from broker.errors import ConfigurationError
from broker.protocol.reader import DEFAULT_MAX_LINE_LENGTH, DEFAULT_MAX_PACKET_SIZE

DEFAULT_PORT = 4730
# A connection whose unread replies pass this many bytes stops being read until
# it catches up (asyncio's write-buffer high-water mark).
DEFAULT_MAX_OUTPUT_BUFFER = 4 * 1024 * 1024
LOG_LEVELS = ("FATAL", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    store: str = "memory:"
    job_retries: int = 0
    worker_wakeup: int = 0
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    max_admin_line: int = DEFAULT_MAX_LINE_LENGTH
    max_output_buffer: int = DEFAULT_MAX_OUTPUT_BUFFER
    handle_prefix: str = ""
    verbose: str = "ERROR"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigurationError(f"--port must be 0-65535, got {self.port}")
        if self.job_retries < 0:
            raise ConfigurationError("--job-retries must be 0 (unlimited) or a positive count")
        if self.worker_wakeup < 0:
            raise ConfigurationError("--worker-wakeup must be 0 (wake all) or a positive count")
        for name in ("max_packet_size", "max_admin_line", "max_output_buffer"):
            if getattr(self, name) < 64:
                option = "--" + name.replace("_", "-")
                raise ConfigurationError(f"{option} must be at least 64 bytes")
        if self.store != "memory:":
            raise ConfigurationError(
                f"--store {self.store!r} is not supported yet; this version keeps jobs in "
                "memory only (--store memory:)"
            )
        if self.verbose.upper() not in LOG_LEVELS:
            raise ConfigurationError(f"--verbose must be one of {', '.join(LOG_LEVELS)}")

    @property
    def job_handle_prefix(self) -> bytes:
        """gearmand's default is ``H:`` plus the host name."""
        return (self.handle_prefix or "H:" + socket.gethostname()).encode()
