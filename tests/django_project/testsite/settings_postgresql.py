"""The test project on a PostgreSQL database that is also the brokers' ``--store``, so
background jobs submitted in ``transaction.atomic()`` are written in the transaction."""

import os

from testsite.settings import *  # noqa: F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ["TEST_PG_HOST"],
        "PORT": os.environ["TEST_PG_PORT"],
        "NAME": os.environ["TEST_PG_NAME"],
        "USER": os.environ["TEST_PG_USER"],
    }
}
GEARMAN_STORE_DATABASE = "default"
