"""The bare baseline: Handoff's settings (same database pool, broker, installed apps) with
none of its middleware, authentication or API layers; one URLconf with one DRF view."""

from handoff.settings import *  # noqa: F403

ROOT_URLCONF = "bench.baseline.urls"
MIDDLEWARE: list[str] = []
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
}
