"""Settings of the Django project the django_jobs tests drive; servers come from the environment."""

import os

SECRET_KEY = "django_jobs tests only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["django_jobs", "django_tasks", "shop.apps.ShopConfig", "legacy", "seeds"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
GEARMAN_SERVERS = os.environ.get("GEARMAN_SERVERS", "127.0.0.1:4730").split(",")
GEARMAN_SERIALIZER = os.environ.get("GEARMAN_SERIALIZER", "json")
# Django's Tasks framework (the django-tasks backport here: Django 6 needs Python 3.12).
TASKS = {
    "default": {
        "BACKEND": "django_jobs.backend.SpoolgearBackend",
        "QUEUES": ["default", "reports"],
    }
}
EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = os.environ.get("MAIL_DIR", "mail")
if os.environ.get("GEARMAN_SSL_CA"):
    GEARMAN_SSL = {
        "ca_file": os.environ["GEARMAN_SSL_CA"],
        "certificate": os.environ["GEARMAN_SSL_CERT"],
        "key": os.environ["GEARMAN_SSL_KEY"],
    }
