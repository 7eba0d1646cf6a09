"""Settings of the example shop: the broker and the run directory come from the environment.

EXAMPLE_RUN_DIR holds what the example writes (the database, sent mail, reports);
GEARMAN_SERVERS is a comma-separated list of host:port.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
RUN_DIR = Path(os.environ.get("EXAMPLE_RUN_DIR", BASE_DIR / "run"))

SECRET_KEY = "example-only-not-secret"
DEBUG = False
ALLOWED_HOSTS: list[str] = []
INSTALLED_APPS = ["django_jobs", "store"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": RUN_DIR / "db.sqlite3"}}
USE_TZ = True
TIME_ZONE = "UTC"

# Mail goes to files, one per message, so the example needs no mail server.
EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = RUN_DIR / "mail"

GEARMAN_SERVERS = os.environ.get("GEARMAN_SERVERS", "127.0.0.1:4730").split(",")
