"""``GEARMAN_SSL``: the project's worker, client, server info and supervisord programs
speak TLS to a broker that only accepts TLS clients with certificates."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import run_broker
from tests.pki import PKI
from tests.with_django.project import gearman_worker, manage, parse_tables


def test_django_commands_speak_tls(tmp_path: Path) -> None:
    pki = PKI(tmp_path / "pki")
    files = pki.client("shop.example")
    tls = {
        "GEARMAN_SSL_CA": files.ca_file,
        "GEARMAN_SSL_CERT": files.certificate,
        "GEARMAN_SSL_KEY": files.key,
    }
    with run_broker(*pki.server_args(), "--plain-listen", "127.0.0.1:0") as broker:
        server = f"127.0.0.1:{broker.tls_port}"
        worker_args = ("-a", "shop", "-n", "images")
        with gearman_worker(server, *worker_args, watched_on=broker.address, **tls):
            done = manage(
                server, "gearman_submit_job", "shop.images.resize", "--args", "[6, 7]",
                "--foreground", **tls,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout) == 42
            shown = manage(server, "gearman_server_info", **tls)
        assert shown.returncode == 0, shown.stderr
        server_row, tasks, workers = parse_tables(shown.stdout)
        assert server_row[0]["Gearman Server Version"].startswith("1.1.20")
        assert {row["Task Name"] for row in tasks} >= {"shop.images.resize"}
        assert len(workers) == 1
        without_tls = manage(server, "gearman_server_info", "--json")
        assert "closed the connection" in json.loads(without_tls.stdout)[0]["error"]
    config = manage(server, "gearman_supervisor_config", "--spooler", "legacy_spooler", **tls)
    assert config.returncode == 0, config.stderr
    spooler_line = next(
        line
        for line in config.stdout.splitlines()
        if line.startswith("command=") and "spooler" in line
    )
    assert (
        f"--ssl --ssl-ca-file={files.ca_file} --ssl-certificate={files.certificate}" in spooler_line
    )
