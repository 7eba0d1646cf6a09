"""The benchmark project: django_jobs plus one app; the server comes from the environment."""

import os

SECRET_KEY = "spoolgear benchmark only"
USE_TZ = True
INSTALLED_APPS = ["django_jobs", "benchapp"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
GEARMAN_SERVERS = [os.environ.get("GEARMAN_SERVER", "127.0.0.1:4730")]
