"""ops/: the alerting rules pass promtool (Debian's prometheus) and fire on the situations
they name; every metric the rules and the Grafana dashboard query is one a broker exports."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request

from tests.helpers import ROOT, require_peer, run_broker

OPS = ROOT / "ops"


def test_alerting_rules_are_valid_and_fire_when_they_should() -> None:
    promtool = require_peer("promtool")
    for command in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        done = subprocess.run(
            [promtool, *command], cwd=OPS, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout


def test_rules_and_dashboard_query_only_exported_metrics() -> None:
    with run_broker("--metrics-listen", "0", "--store", "memory:") as broker:
        address = next(w for w in broker.listening.split() if w.startswith("metrics="))[8:]
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
            exposition = response.read().decode()
    exported = set(re.findall(r"^# TYPE (\S+) (\w+)", exposition, re.MULTILINE))
    names = set()
    for family, kind in exported:
        names |= {family, f"{family}_total"} if kind == "counter" else {family}
        if kind == "histogram":
            names |= {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
    dashboard = json.loads((OPS / "grafana-dashboard.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    queries.append((OPS / "alerts.yml").read_text())
    used = {name for query in queries for name in re.findall(r"\bspoolgear_[a-z_]+", query)}
    assert used and used <= names, sorted(used - names)
