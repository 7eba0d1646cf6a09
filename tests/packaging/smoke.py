"""What a user gets from ``pip install``, checked from the installed package alone.

Run by ``tests/packaging/test_installed.py`` with a venv's interpreter, from a directory
outside the checkout, so ``broker`` and ``django_jobs`` can only come from site-packages.
Nothing here imports the test suite or a test extra: ``python smoke.py CORE [--django]``,
where CORE is the ``spoolgear --version`` words expected (``compiled core`` or
``pure Python core``). Exits non-zero with the reason on the first thing that is wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

SPOOLGEAR = str(Path(sys.executable).with_name("spoolgear"))
TIMEOUT = 60


def fail(message: str) -> None:
    sys.exit(f"smoke: {message}")


def run(*command: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    answer = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    if answer.returncode != 0:
        fail(f"{' '.join(command)} exited {answer.returncode}:\n{answer.stdout}{answer.stderr}")
    return answer.stdout


def check_imported_from(checkout: str, editable: str | None, django: bool) -> None:
    """From site-packages (or the tree of an editable install), never the checkout."""
    packages = [importlib.import_module("broker")]
    if django:
        packages.append(importlib.import_module("django_jobs"))
    for package in packages:
        where = Path(package.__file__ or "").resolve()
        installed = where.is_relative_to(editable) if editable else "site-packages" in where.parts
        if not installed or where.is_relative_to(checkout):
            fail(f"{package.__name__} imported from {where}, not from the installed package")


def check_version(core: str) -> None:
    from broker import __version__

    if metadata.version("spoolgear") != __version__:
        fail(f"the package metadata says {metadata.version('spoolgear')}, broker {__version__}")
    version = run(SPOOLGEAR, "--version")
    if f"spoolgear {__version__}" not in version or core not in version:
        fail(f"spoolgear --version said {version!r}; expected {__version__} and {core!r}")


@contextlib.contextmanager
def running_broker(data_dir: Path) -> Iterator[str]:
    """``spoolgear serve`` on a SQLite store; yields its address."""
    from broker.banner import read_banner

    broker = subprocess.Popen(
        [SPOOLGEAR, "serve", "--port", "0", "--store", f"sqlite:{data_dir / 'jobs.db'}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert broker.stdout is not None
        line = broker.stdout.readline()
        try:
            banner = read_banner(line)
        except ValueError:
            fail(f"the broker printed {line!r} instead of its banner")
        yield banner.gearman
    finally:
        broker.terminate()
        broker.wait(TIMEOUT)


def check_job(address: str) -> None:
    """A job submitted with the ``spoolgear`` CLI, run by ``broker.worker.Worker``."""
    from broker.worker import Worker, WorkerJob

    run(SPOOLGEAR, "submit", "--server", address, "--background", "reverse", "installed")
    results: list[bytes] = []
    worker = Worker([address], client_id="smoke")

    def reverse(job: WorkerJob) -> bytes:
        results.append(job.data[::-1])
        worker.stop()
        return results[-1]

    worker.register("reverse", reverse)
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    worker.close()
    if results != [b"dellatsni"]:
        fail(f"the worker ran {results!r}, expected the submitted job once")


SETTINGS = """
SECRET_KEY = "smoke"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
INSTALLED_APPS = ["django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
                  "django.contrib.sessions", "django.contrib.messages", "django_jobs"]
MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware",
              "django.contrib.auth.middleware.AuthenticationMiddleware",
              "django.contrib.messages.middleware.MessageMiddleware"]
ROOT_URLCONF = "smoke_urls"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
              "OPTIONS": {"context_processors": [
                  "django.template.context_processors.request",
                  "django.contrib.auth.context_processors.auth",
                  "django.contrib.messages.context_processors.messages"]}}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "smoke.db"}}
GEARMAN_SERVERS = [ADDRESS]
"""

DASHBOARD = """
import django
django.setup()
from django.contrib.auth.models import User
from django.test import Client
User.objects.create_superuser("admin", "admin@example.com", "pw")
client = Client()
client.force_login(User.objects.get(username="admin"))
page = client.get("/admin/django_jobs/broker/")
assert page.status_code == 200, page.status_code
text = page.content.decode()
assert "reverse" in text, "the dashboard does not show the function the broker knows"
print("dashboard rendered")
"""


def check_django(project: Path, address: str) -> None:
    """``check`` and ``migrate`` find the app's migrations, the dashboard its template."""
    (project / "smoke_settings.py").write_text(SETTINGS.replace("ADDRESS", repr(address)))
    (project / "smoke_urls.py").write_text(
        "from django.contrib import admin\nfrom django.urls import path\n"
        "urlpatterns = [path('admin/', admin.site.urls)]\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "smoke_settings", "PYTHONPATH": str(project)}
    django_admin = str(Path(sys.executable).with_name("django-admin"))
    run(django_admin, "check", cwd=project, env=env)
    migrated = run(django_admin, "migrate", "--no-input", cwd=project, env=env)
    if "django_jobs" not in migrated:
        fail(f"migrate did not apply django_jobs' migrations:\n{migrated}")
    if "dashboard rendered" not in run(sys.executable, "-c", DASHBOARD, cwd=project, env=env):
        fail("the dashboard page did not render")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("core", help="expected in spoolgear --version")
    parser.add_argument("--checkout", required=True, help="the source tree not to import from")
    parser.add_argument("--django", action="store_true", help="the [django] extra is installed")
    parser.add_argument("--editable", metavar="TREE", help="installed with pip install -e TREE")
    args = parser.parse_args()
    check_imported_from(args.checkout, args.editable, args.django)
    check_version(args.core)
    scratch = Path(tempfile.mkdtemp(prefix="spoolgear-smoke-"))
    try:
        with running_broker(scratch) as address:
            check_job(address)
            if args.django:
                check_django(scratch, address)
    finally:
        shutil.rmtree(scratch)
    print("smoke: ok")


if __name__ == "__main__":
    main()
