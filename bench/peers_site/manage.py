"""The Django-side benchmark project's manage.py (``bench/django_peers.py`` runs it)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peersite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
