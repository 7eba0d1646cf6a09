"""ops/systemd/: the units pass ``systemd-analyze verify`` (Debian's systemd), the broker
speaks systemd's readiness protocol to a real notify socket, and the sample configuration
file starts a broker."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT, require_peer, run_broker

UNITS = ROOT / "ops" / "systemd"
# Where the units expect spoolgear and the Django project; the test points them at this
# interpreter's, since verify checks that each ExecStart program exists.
INSTALLED_PATHS = {
    "/opt/spoolgear/bin/spoolgear": str(Path(sys.executable).with_name("spoolgear")),
    "/srv/shop/venv/bin/python": sys.executable,
}


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = require_peer("systemd-analyze")
    for unit in UNITS.glob("*.service"):
        text = unit.read_text()
        for placeholder, real in INSTALLED_PATHS.items():
            text = text.replace(placeholder, real)
        (tmp_path / unit.name).write_text(text)
    shutil.copy(UNITS / "spoolgear-workers.target", tmp_path)
    shutil.copy(
        tmp_path / "spoolgear-worker@.service", tmp_path / "spoolgear-worker@mail-1.service"
    )
    units = ["spoolgear.service", "spoolgear-worker@mail-1.service", "spoolgear-workers.target"]
    done = subprocess.run(
        [analyze, "verify", *(str(tmp_path / name) for name in units)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify exits 0 on unknown keys and bad values, saying so: any output is a finding.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_the_broker_tells_systemd_when_it_is_ready_and_when_it_stops(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(tmp_path / "notify"))
        systemd.settimeout(30)
        environment = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify")}
        with run_broker(env=environment) as broker:
            ready = systemd.recv(4096).decode().splitlines()
            assert "READY=1" in ready
            assert f"MAINPID={broker.process.pid}" in ready
            broker.process.terminate()
            assert systemd.recv(4096) == b"STOPPING=1"


def test_the_sample_configuration_file_starts_a_broker_the_command_line_overrides() -> None:
    overrides = ["--listen", "127.0.0.1", "--uwsgi-socket", "127.0.0.1:0"]
    overrides += ["--metrics-listen", "127.0.0.1:0", "--allow", "127.0.0.1"]
    with run_broker("--config", str(UNITS / "broker.toml"), *overrides) as broker:
        assert broker.listening.split()[2].startswith("gearman=127.0.0.1:")
        assert broker.uwsgi and not broker.uwsgi[0].endswith(":3031")
