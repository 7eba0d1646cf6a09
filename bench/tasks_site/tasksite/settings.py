"""The Tasks framework benchmark project: one trivial task, on spoolgear's backend or
django-tasks-db's (``BENCH_BACKEND``), with its database from ``BENCH_DATABASE`` (a SQLite
file, or a PostgreSQL URL)."""

import os

from psycopg.conninfo import conninfo_to_dict

SECRET_KEY = "spoolgear benchmark only"
USE_TZ = True
INSTALLED_APPS = ["django_jobs", "django_tasks", "django_tasks_db", "benchtasks"]
_DATABASE = os.environ.get("BENCH_DATABASE", "bench.sqlite3")
if _DATABASE.startswith("postgresql:"):
    _parts = conninfo_to_dict(_DATABASE)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": _parts["host"],
            "PORT": _parts["port"],
            "NAME": _parts["dbname"],
            "USER": _parts["user"],
        }
    }
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": _DATABASE}}
_BACKENDS = {
    "spoolgear": "django_jobs.backend.SpoolgearBackend",
    "django-tasks-db": "django_tasks_db.DatabaseBackend",
}
TASKS = {"default": {"BACKEND": _BACKENDS[os.environ.get("BENCH_BACKEND", "spoolgear")]}}
GEARMAN_SERVERS = [os.environ.get("GEARMAN_SERVER", "127.0.0.1:4730")]
