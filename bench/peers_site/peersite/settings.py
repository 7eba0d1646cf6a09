"""One Django project for every job system ``bench/django_peers.py`` compares; which one is
``BENCH_SYSTEM`` (its settings below), where its queue lives comes from ``BENCH_REDIS``
(a redis:// URL), ``BENCH_DATABASE`` (a postgresql:// URL), ``BENCH_HUEY_FILE`` or
``GEARMAN_SERVER``. Each system runs in its own virtual environment, so a block only
imports what that system installs."""

import os

SECRET_KEY = "spoolgear benchmark only"
USE_TZ = True
SYSTEM = os.environ.get("BENCH_SYSTEM", "jbox")
INSTALLED_APPS = ["marks"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
_REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")

if SYSTEM in ("jbox", "task-api", "tasks-framework"):
    INSTALLED_APPS = ["django_jobs", "django_tasks", *INSTALLED_APPS]
    GEARMAN_SERVERS = [os.environ.get("GEARMAN_SERVER", "127.0.0.1:4730")]
    TASKS = {"default": {"BACKEND": "django_jobs.backend.SpoolgearBackend"}}
elif SYSTEM == "celery":
    CELERY_BROKER_URL = _REDIS
    CELERY_TASK_IGNORE_RESULT = True
    CELERY_WORKER_HIJACK_ROOT_LOGGER = False
elif SYSTEM == "huey-redis":
    INSTALLED_APPS = ["huey.contrib.djhuey", *INSTALLED_APPS]
    HUEY = {"huey_class": "huey.RedisHuey", "name": "bench", "url": _REDIS, "immediate": False}
elif SYSTEM == "huey-sqlite":
    INSTALLED_APPS = ["huey.contrib.djhuey", *INSTALLED_APPS]
    HUEY = {
        "huey_class": "huey.SqliteHuey",
        "name": "bench",
        "filename": os.environ.get("BENCH_HUEY_FILE", "huey.sqlite3"),
        "immediate": False,
    }
elif SYSTEM in ("procrastinate", "django-tasks-db"):
    from psycopg.conninfo import conninfo_to_dict

    _parts = conninfo_to_dict(os.environ["BENCH_DATABASE"])
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": str(_parts["host"]),
            "PORT": str(_parts["port"]),
            "NAME": str(_parts["dbname"]),
            "USER": str(_parts["user"]),
        }
    }
    if SYSTEM == "procrastinate":
        INSTALLED_APPS = ["procrastinate.contrib.django", *INSTALLED_APPS]
    else:
        INSTALLED_APPS = ["django_tasks", "django_tasks_db", *INSTALLED_APPS]
        TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
