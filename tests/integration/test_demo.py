"""`make demo` (examples/demo.py) and the smaller examples/quickstart.py work end to end."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def test_quickstart_runs_every_job() -> None:
    result = subprocess.run(
        [sys.executable, "examples/quickstart.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "result: thumb-of-portrait.jpg.png" in result.stdout
    assert "in this order: holiday.jpg, portrait.jpg, scheduled.jpg" in result.stdout
    assert "progress 4/4" in result.stdout


def test_demo_runs_the_example_shop_under_supervisord_end_to_end() -> None:
    result = subprocess.run(
        [sys.executable, "examples/demo.py"], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for program in (
        "spoolgear-spooler",
        "store:store-mail-mail_00",
        "store:store-mail-mail_01",
        "store:store-reports-default",
        "store:store-video-video",
    ):
        assert f"{program} " in out and "RUNNING" in out, program
    assert "transcoding intro.mov [##############################] 20/20" in out
    assert "result: intro.webm" in out
    assert (
        "mail written by the file backend to: ada@example.com, grace@example.com, linus@example.com"
    ) in out
    assert "spool handler: imported catalogue.csv" in out
    assert "schedule store.reports.hourly_sales_report: 0 * * * *" in out
    assert "schedule store.reports.refresh_stock_levels: @every 2" in out
    assert "| store.mail.send_welcome_mail       |       2       |" in out
    assert "supervisord and every worker exited" in out
    assert out.rstrip().endswith("broker exited with 0\n\ndemo complete")
