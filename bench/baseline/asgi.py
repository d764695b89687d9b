"""ASGI entry point of the bare baseline, served by the same gunicorn + uvicorn settings."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.baseline.settings")
application = get_asgi_application()
