"""The test settings plus an app whose worker module cannot be imported."""

from testsite.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "broken"]  # noqa: F405
