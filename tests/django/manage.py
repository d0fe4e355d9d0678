#!/usr/bin/env python
"""The Django project behind tests/django_login.rs: `python manage.py <command>`.

CANARYD_DJANGO_DIR must name a writable directory; the SQLite database lives there.
"""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "probesite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
