"""A private supervisord for the demo and the tests: its own config, socket and logs.

In production supervisord is the system's; ``manage.py gearman_supervisor_config``
writes the programs file to include from it (see ``supervisor/README.md``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

BIN = Path(sys.executable).parent
MAIN_CONFIG = """\
[unix_http_server]
file={socket}

[supervisord]
logfile={run_dir}/supervisord.log
pidfile={run_dir}/supervisord.pid
childlogdir={run_dir}
nodaemon=true

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{socket}

[include]
files = {programs}
"""


class Supervisord:
    """``supervisord -n`` with ``programs`` included; ``ctl`` runs supervisorctl against it."""

    def __init__(self, run_dir: Path, programs: Path) -> None:
        # A unix socket path must stay under ~100 bytes, so it lives in a short directory.
        self._socket_dir = Path(tempfile.mkdtemp(prefix="sg-"))
        self.config = run_dir / "supervisord.conf"
        self.config.write_text(
            MAIN_CONFIG.format(socket=self._socket_dir / "sock", run_dir=run_dir, programs=programs)
        )
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Supervisord:
        self.process = subprocess.Popen(
            [BIN / "supervisord", "-c", self.config],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while self.ctl("pid").returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"supervisord did not start; see {self.config.parent}")
            time.sleep(0.1)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BIN / "supervisorctl", "-c", self.config, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    def shutdown(self, timeout: float = 120) -> int:
        """Stop every program (gracefully: their stopsignal) and supervisord itself."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.ctl("shutdown")
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        shutil.rmtree(self._socket_dir, ignore_errors=True)
        self.process = None
        return code

    def pids(self, prefix: str = "") -> dict[str, int]:
        """Processes in the RUNNING state (up for ``startsecs``) whose names start with
        ``prefix``, by name."""
        running = {}
        for line in self.ctl("status").stdout.splitlines():
            words = line.split()
            if len(words) > 3 and words[1] == "RUNNING" and words[0].startswith(prefix):
                running[words[0]] = int(words[3].rstrip(","))
        return running
