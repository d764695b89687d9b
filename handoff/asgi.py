"""ASGI entry point: the web process runs under uvicorn workers so the long-poll can wait
without holding a thread or a database connection; every other view runs as usual."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "handoff.settings")
application = get_asgi_application()
