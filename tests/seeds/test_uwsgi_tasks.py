"""uwsgi_tasks README (seeds/002): every example, on a real broker and real workers."""

from __future__ import annotations

import datetime as dt
import itertools
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from broker.admin import AdminClient
from broker.protocol.priorities import Priority
from django_jobs.checks import check_tasks
from django_jobs.client import job_priority
from tests.helpers import RunningBroker, wait_until
from tests.seeds.conftest import read_notes
from tests.with_django.project import WorkerProcess, gearman_worker, manage_env


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "seeds.log"


@pytest.fixture
def tasks_worker(broker: RunningBroker, log: Path, tmp_path: Path) -> Iterator[WorkerProcess]:
    """``gearman_worker -a seeds -n tasks``: the app's tasks.py, as uwsgi_tasks keeps them."""
    (tmp_path / "files").mkdir()
    with (
        gearman_worker(
            broker.address,
            "-a",
            "seeds",
            "-n",
            "tasks",
            "-v",
            "2",  # each finished job is logged (DEBUG): the runs are timed from those lines
            SEEDS_LOG=str(log),
            SEEDS_DIR=str(tmp_path / "files"),
            MAIL_DIR=str(tmp_path / "mail"),
        ) as worker,
        override_settings(GEARMAN_CLIENT_SERVERS=[broker.address]),
    ):
        yield worker


def failed(address: str) -> dict[str, str]:
    with AdminClient(address) as admin:
        return {record.function: record.error for record in admin.show_failed()}


def test_send_email_async_runs_on_a_worker_not_in_the_view(
    tasks_worker: WorkerProcess, tmp_path: Path
) -> None:
    from seeds.tasks import send_email_async

    call = send_email_async("Welcome!", "Thank you!", "user@domain.com")  # my_view()
    assert call.handle is not None and call.result is None, "queued, not run in the view"
    mail = tmp_path / "mail"
    wait_until(lambda: mail.exists() and any(mail.iterdir()))
    (sent,) = mail.iterdir()
    assert "Subject: Welcome!" in sent.read_text() and "To: user@domain.com" in sent.read_text()


def test_a_wrapper_returning_spool_retry_retries_retry_count_times_then_fails_loudly(
    broker: RunningBroker, tasks_worker: WorkerProcess, log: Path
) -> None:
    """Documented difference: retry_count=3 is three retries after the first run (uwsgi_tasks:
    three runs in all), and the end is the failed list, not silence."""
    from seeds.tasks import spooler_task

    spooler_task("hello")
    wait_until(lambda: "seeds.tasks.spooler_task" in failed(broker.address), timeout=20)
    runs = [note for note in read_notes(log) if note[1] == "Hello, spooler! text ="]
    assert [note[2] for note in runs] == ["hello"] * 4
    assert (
        "failed on attempt 4 of 4: returned SPOOL_RETRY"
        in failed(broker.address)["seeds.tasks.spooler_task"]
    )


def test_retry_task_exception_with_a_timeout_runs_retry_count_more_times(
    broker: RunningBroker, tasks_worker: WorkerProcess, log: Path
) -> None:
    from seeds.tasks import process_purchase

    process_purchase(42)
    wait_until(lambda: "seeds.tasks.process_purchase" in failed(broker.address), timeout=20)
    assert [note[1:] for note in read_notes(log)] == [["process_purchase", 42]] * 3
    assert (
        "attempt 3 of 3: RetryTaskException"
        in failed(broker.address)["seeds.tasks.process_purchase"]
    )
    assert "gave up after" not in failed(broker.address)["seeds.tasks.process_purchase"]


def test_retry_task_exception_with_a_constant_count_ends(
    broker: RunningBroker, tasks_worker: WorkerProcess, log: Path
) -> None:
    """The README warns this "may lead to infinite tasks execution"; here count is the
    whole budget, so it ends after the first run and two retries."""
    from seeds.tasks import retry_with_count

    retry_with_count(7)
    wait_until(lambda: "seeds.tasks.retry_with_count" in failed(broker.address))
    assert [note[1:] for note in read_notes(log)] == [
        ["retry_with_count", 7, attempt] for attempt in (1, 2, 3)
    ]


def test_remove_files_sequentially_re_enqueues_itself_with_its_at_and_buffer(
    tasks_worker: WorkerProcess, log: Path, tmp_path: Path
) -> None:
    files = tmp_path / "files"
    for name in ("a.txt", "b.txt"):
        (files / name).write_text(name)
    (files / "c-locked").mkdir()  # os.remove() fails on it: the README's IOError branch
    from seeds.tasks import remove_files_sequentially

    remove_files_sequentially()
    wait_until(lambda: any(note[1] == "errors" for note in read_notes(log)), timeout=30)
    notes = read_notes(log)
    calls = [note[2] for note in notes if note[1] == "remove_files_sequentially"]
    locked = str(files / "c-locked")
    assert calls == [None, str(files / "a.txt"), str(files / "b.txt"), str(files / "b.txt"), locked]
    assert [name for name in (files.iterdir())] == [files / "c-locked"]
    assert notes[-2][1:] == ["results", [str(files / n) for n in ("a.txt", "b.txt")] + [locked]]
    assert notes[-1][1] == "errors" and list(notes[-1][2]) == [locked]
    assert "Is a directory" in notes[-1][2][locked]
    assert " failed after " not in tasks_worker.output(), (
        "returning current_task(...) is the re-enqueue idiom, not a failure"
    )

    def runs() -> list[dt.datetime]:
        return [
            dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            for line in tasks_worker.output().splitlines()
            if "job seeds.tasks.remove_files_sequentially" in line
        ]

    # The worker logs a run once it has ended, just after the last run's note.
    wait_until(lambda: len(runs()) >= 5)
    assert len(runs()) == 5 and all(
        later - earlier > dt.timedelta(seconds=0.5) for earlier, later in itertools.pairwise(runs())
    ), f"each waits for its at: {runs()}"


def test_priority_digits_are_accepted_and_run_before_unprioritised_jobs(
    tasks_worker: WorkerProcess, log: Path
) -> None:
    from seeds.tasks import low_priority_digits

    assert job_priority("5") is Priority.HIGH  # like uWSGI's priority directories
    low_priority_digits("digits")
    wait_until(lambda: ["low_priority_digits", "digits"] in [n[1:] for n in read_notes(log)])
    with pytest.raises(ValueError, match="uwsgi_tasks' digits"):
        job_priority("urgent")


def test_a_bad_setup_fails_at_import_not_in_the_web_request() -> None:
    source = "from django_jobs.uwsgi_tasks import task\n@task(priority='urgent')\ndef f(): ..."
    with pytest.raises(ValueError, match="@task f: priority must be one of"):
        exec(compile(source, "bad_setup.py", "exec"), {"__name__": "bad_setup"})


def test_tasks_outside_a_worker_module_are_refused_loudly(tmp_path: Path) -> None:
    """``myapp/__init__.py`` in the first example: uwsgi_tasks ran it anywhere; here a
    call refuses (no worker would load it) and ``manage.py check`` names it."""
    module = types.ModuleType("myapp")
    exec(
        compile(
            textwrap.dedent("""
        from django.core.mail import send_mail
        from django_jobs.uwsgi_tasks import task, TaskExecutor

        @task(executor=TaskExecutor.SPOOLER)
        def send_email_async(subject, body, email_to):
            return send_mail(subject, body, 'noreply@domain.com', [email_to])
    """),
            "myapp/__init__.py",
            "exec",
        ),
        module.__dict__,
    )
    with pytest.raises(ImproperlyConfigured, match=r"move it to APP/tasks\.py"):
        module.send_email_async("Welcome!", "Thank you!", "user@domain.com")
    assert "myapp.send_email_async" in [m.obj for m in check_tasks() if m.id == "django_jobs.W001"]


def test_project_setup_helpers_import_and_work_outside_django(
    broker: RunningBroker, tmp_path: Path
) -> None:
    """``set_uwsgi_callbacks()`` and ``django_setup()`` from the README's project setup."""
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent("""
        from django_jobs.uwsgi_tasks import django_setup, set_uwsgi_callbacks

        set_uwsgi_callbacks()
        django_setup("testsite.settings")
        from seeds.tasks import low_priority_digits
        print(low_priority_digits("from a script").handle.handle)
    """)
    )
    env = manage_env(broker.address)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["PYTHONPATH"] += ":" + str(Path(__file__).resolve().parents[1] / "django_project")
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("H:")


def test_timers_and_cron_become_one_broker_schedule_each(broker: RunningBroker, log: Path) -> None:
    with (
        gearman_worker(broker.address, "-a", "seeds", "-n", "timers", SEEDS_LOG=str(log)) as worker,
        override_settings(GEARMAN_CLIENT_SERVERS=[broker.address]),
    ):
        with AdminClient(broker.address) as admin:
            wait_until(lambda: len(admin.show_schedules()) == 3)
            specs = {s.function: s.spec for s in admin.show_schedules()}
        assert specs == {
            "seeds.timers.print_every_5_seconds": "@every 5",
            "seeds.timers.print_every_5_seconds_3_times": "@every 5 x3",
            "seeds.timers.print_every_2_minutes": "*/2 * * * *",
        }
        from seeds.gearman_workers.timers import (
            print_every_2_minutes_after_call,
            print_every_5_seconds_after_call,
            run_me_periodically,
        )

        print_every_5_seconds_after_call()  # my_view()
        print_every_2_minutes_after_call()
        run_me_periodically.add_setup(seconds=1, iterations=2)  # README: 10
        run_me_periodically()
        wait_until(
            lambda: [n[1:] for n in read_notes(log)].count(["Running with signal:", 0]) == 2,
            timeout=20,
        )
        with AdminClient(broker.address) as admin:
            names = {s.function for s in admin.show_schedules()}
        assert {
            "seeds.timers.print_every_5_seconds_after_call",
            "seeds.timers.print_every_2_minutes_after_call",
        } <= names
    assert "seeds.timers.print_every_5_seconds_3_times has target='workers'" in worker.output()


def test_a_lazy_timer_without_seconds_imports_and_refuses_only_when_armed() -> None:
    from seeds.gearman_workers.timers import run_me_periodically

    pristine = run_me_periodically.setup
    run_me_periodically.setup = pristine.copy()
    run_me_periodically.setup.extra["seconds"] = 0
    try:
        with pytest.raises(ValueError, match=r"cannot be armed.*add_setup"):
            run_me_periodically.arm(("127.0.0.1:1",))
    finally:
        run_me_periodically.setup = pristine


def test_two_timers_under_one_name_are_refused_at_import() -> None:
    """The README's timer example defines print_every_5_seconds twice."""
    source = textwrap.dedent("""
        from django_jobs.uwsgi_tasks import timer

        @timer(seconds=5)
        def print_every_5_seconds(signal_number):
            print('Task for signal', signal_number)

        @timer(seconds=5, iterations=3, target='workers')
        def print_every_5_seconds(signal_number):
            print('Task with iterations for signal', signal_number)
    """)
    with pytest.raises(
        ImproperlyConfigured,
        match=r"two tasks are named 'readme_timers\."
        r"print_every_5_seconds'.*line 4.*line 8",
    ):
        exec(compile(source, "readme_timers.py", "exec"), {"__name__": "readme_timers"})
