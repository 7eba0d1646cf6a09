"""The spoolgear demo (``make demo``): the example shop run the way production runs it.

1. ``spoolgear serve`` with its embedded SQLite store and a uWSGI spool socket;
2. the example project's worker pools under a real supervisord, from the config
   ``manage.py gearman_supervisor_config`` writes (mail x2, video, reports, the spooler);
3. jobs through both front doors: welcome mails as ``@task`` background jobs, a
   video transcode with a progress bar (WORK_STATUS), a uWSGI spool packet, and
   the broker's timer and cron schedules;
4. the ``gearman_server_info`` tables, then a clean shutdown: supervisord stops
   every worker gracefully (running jobs finish), then the broker.

``--keep`` leaves the run directory (logs, mail files, database) for a look.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ROOT / "examples" / "project"
sys.path[:0] = [str(ROOT), str(PROJECT)]

from supervised import Supervisord  # noqa: E402  (examples/, the script's directory)

from broker.admin import AdminClient  # noqa: E402  (after the path set-up above)
from broker.banner import read_banner  # noqa: E402
from broker.uwsgi_client import send_spool  # noqa: E402

# Programs the generated config runs: mail x2, video, reports, spooler.
EXPECTED_WORKERS = 5
SIGNUPS = [
    ("ada@example.com", "Ada"),
    ("grace@example.com", "Grace"),
    ("linus@example.com", "Linus"),
]


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo failed: {what} did not happen within {timeout:.0f} s")
        time.sleep(0.1)


def start_broker(run_dir: Path) -> tuple[subprocess.Popen[str], str, str]:
    broker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "broker.cli",
            "serve",
            "--port",
            "0",
            "--store",
            f"sqlite:{run_dir / 'jobs.db'}",
            "--uwsgi-socket",
            "127.0.0.1:0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert broker.stdout is not None
    banner = broker.stdout.readline().strip()
    print(banner)
    bound = read_banner(banner)
    return broker, bound.gearman, bound.first("uwsgi")


def manage(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        text=True,
        capture_output=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def progress_bar(numerator: int, denominator: int) -> None:
    """Redrawn in place on a terminal; a line per quarter in a log."""
    filled = 30 * numerator // max(denominator, 1)
    bar = f"  transcoding intro.mov [{'#' * filled}{'.' * (30 - filled)}] {numerator}/{denominator}"
    if sys.stdout.isatty():
        print("\r" + bar, end="", flush=True)
    elif (4 * numerator) % max(denominator, 1) < 4:
        print(bar, flush=True)


def submit_jobs(uwsgi_address: str) -> None:
    import django

    django.setup()
    from store.gearman_workers.mail import send_welcome_mail

    from django_jobs.client import GearmanClient

    step("welcome mails: @task background jobs, durable in the broker's store")
    for address, name in SIGNUPS:
        call = send_welcome_mail(address, name)
        assert call.handle is not None
        print(f"  queued send_welcome_mail({address!r}) as {call.handle.handle}")
    step("a long foreground job reporting progress (WORK_STATUS)")
    with GearmanClient() as client:
        result = client.submit_job(
            "store.video.transcode",
            "intro.mov",
            steps=20,
            step_seconds=0.05,
            on_status=progress_bar,
            timeout=60,
        )
    print(f"{chr(10) if sys.stdout.isatty() else ''}  result: {result}")
    step("a uWSGI spool packet (modifier1 17) on the uWSGI front door")
    send_spool(uwsgi_address, {b"ud_spool_func": b"import_products", b"file": b"catalogue.csv"})
    print("  spooled import_products(file=catalogue.csv): acknowledged once stored")


def mail_recipients(mail_dir: Path) -> list[str]:
    """Recipients over every file: Django's file backend may put two mails in one file."""
    if not mail_dir.exists():
        return []
    return sorted(
        line.split(": ", 1)[1]
        for message in mail_dir.iterdir()
        for line in message.read_text().splitlines()
        if line.startswith("To: ")
    )


def show_results(run_dir: Path, address: str) -> None:
    step("results")
    mail_dir, imported = run_dir / "mail", run_dir / "imports" / "catalogue.csv"
    stock = run_dir / "reports" / "stock.log"
    wait_for("three mails", lambda: len(mail_recipients(mail_dir)) == len(SIGNUPS))
    wait_for("the spool import", imported.exists)
    wait_for("a timer firing", stock.exists)
    recipients = mail_recipients(mail_dir)
    print(f"  mail written by the file backend to: {', '.join(recipients)}")
    print(f"  spool handler: {imported.read_text().strip()}")
    print(f"  timer: {stock.read_text().splitlines()[0]}")
    with AdminClient(address) as admin:
        for schedule in admin.show_schedules():
            next_run = time.strftime("%H:%M:%S", time.localtime(schedule.next_run))
            print(
                f"  schedule {schedule.function}: {schedule.spec}, fired {schedule.fired} "
                f"time(s), next at {next_run}"
            )


def main() -> int:
    keep = "--keep" in sys.argv[1:]
    run_dir = Path(tempfile.mkdtemp(prefix="spoolgear-demo-"))
    (run_dir / "logs").mkdir()
    step("the broker")
    broker, address, uwsgi_address = start_broker(run_dir)
    os.environ.update(
        GEARMAN_SERVERS=address,
        EXAMPLE_RUN_DIR=str(run_dir),
        DJANGO_SETTINGS_MODULE="exampleshop.settings",
    )
    try:
        step("worker pools under supervisord (manage.py gearman_supervisor_config)")
        programs = run_dir / "programs.conf"
        manage(
            "gearman_supervisor_config",
            "--numprocs",
            "1",
            "--pool",
            "store.mail=2",
            "--log-dir",
            str(run_dir / "logs"),
            "--env",
            f"GEARMAN_SERVERS={address}",
            "--env",
            f"EXAMPLE_RUN_DIR={run_dir}",
            "--spooler",
            "store.spool",
            "-o",
            str(programs),
        )
        with Supervisord(run_dir, programs) as supervisord, AdminClient(address) as admin:
            wait_for(
                "the workers registering and staying up",
                lambda: (
                    len(admin.workers()) >= EXPECTED_WORKERS
                    and len(supervisord.pids()) == EXPECTED_WORKERS
                ),
            )
            print(supervisord.ctl("status").stdout.rstrip())
            submit_jobs(uwsgi_address)
            show_results(run_dir, address)
            step("manage.py gearman_server_info")
            print(manage("gearman_server_info").rstrip())
            step("shutting down: supervisord stops each worker with SIGTERM (jobs finish)")
        print("  supervisord and every worker exited")
    finally:
        broker.terminate()
        broker.wait(30)
        if keep:
            print(f"\nrun directory kept: {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    print(f"  broker exited with {broker.returncode}\n\ndemo complete")
    return 0


if __name__ == "__main__":
    sys.exit(main())
