"""The test settings with django-gearman's name hook and -commands' namespace."""

from testsite.settings import *  # noqa: F403

GEARMAN_JOB_NAME = "v2.{}".format
GEARMAN_CLIENT_NAMESPACE = "staging"
