"""One shared Redis client per process (rate limits, wake-ups), with short timeouts so a Redis
outage costs a request half a second at most, never an error."""

from __future__ import annotations

import threading

from django.conf import settings

_lock = threading.Lock()
_client = None
_client_url = None


def get_redis():
    """The client for REDIS_URL, or None when it is not set (embedded default)."""
    global _client, _client_url
    url = settings.REDIS_URL
    if not url:
        return None
    with _lock:
        if _client is None or _client_url != url:
            import redis

            _client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
            _client_url = url
        return _client


def key_prefix() -> str:
    return settings.CACHES["default"].get("KEY_PREFIX", "handoff")
