"""Bearer API keys for agents, and the per-agent rate limit."""

from __future__ import annotations

import logging
import math
import time
from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, permissions, throttling

from escalation.api.errors import ApiError
from escalation.models import Agent, AgentKey
from handoff.redis import get_redis, key_prefix

log = logging.getLogger("handoff.api")

LAST_USED_RESOLUTION = timedelta(minutes=1)


def key_from_header(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate_key(header: str) -> AgentKey | None:
    """The active key named by an Authorization header, or None. Shared by DRF and long-poll."""
    raw = key_from_header(header)
    if raw is None:
        return None
    key = AgentKey.authenticate(raw)
    if key is not None:
        now = timezone.now()
        # Touch last_used_at at most once a minute per key, not on every request.
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            AgentKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


class AgentKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = request.headers.get("Authorization", "")
        if not header:
            return None  # NotAuthenticated -> 401 with WWW-Authenticate
        key = authenticate_key(header)
        if key is None:
            raise ApiError(
                401,
                "unauthenticated",
                "missing, unknown or revoked API key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return key.agent, key

    def authenticate_header(self, request) -> str:
        return "Bearer"


class IsAgent(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, Agent)


# --- rate limit ------------------------------------------------------------------------------

# Token bucket in Redis, atomic in one script: KEYS[1] bucket; ARGV rate, burst, now (s), the
# tokens wanted. Returns {tokens granted (as many as are there, up to those wanted), seconds
# until the next token when short}.
_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local wanted = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local granted = math.min(wanted, math.floor(tokens))
tokens = tokens - granted
local wait = 0
if granted < wanted then
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {granted, tostring(wait)}
"""

_local_buckets: dict[int, tuple[float, float]] = {}


def take_token(agent: Agent, now: float | None = None) -> float:
    """0 when the request may go ahead, else seconds to wait. Fails open if Redis is down:
    the API keeps accepting cases, and the database caps open cases regardless."""
    return take_tokens(agent, 1, now)[1]


def take_tokens(agent: Agent, wanted: int, now: float | None = None) -> tuple[int, float]:
    """(tokens granted, seconds until the next one when fewer than wanted): a batch of creates
    costs one token per item, as many single creates would."""
    now = time.time() if now is None else now
    rate, burst = max(agent.rate_per_second, 0.001), max(agent.rate_burst, 1)
    client = get_redis()
    if client is None:
        # Embedded default: a per-process bucket (one web process there).
        tokens, at = _local_buckets.get(agent.pk, (burst, now))
        tokens = min(burst, tokens + max(0.0, now - at) * rate)
        granted = min(wanted, math.floor(tokens))
        _local_buckets[agent.pk] = (tokens - granted, now)
        return granted, 0.0 if granted == wanted else (1 - (tokens - granted)) / rate
    try:
        granted, wait = client.eval(
            _BUCKET_LUA, 1, f"{key_prefix()}:rate:{agent.pk}", rate, burst, now, wanted
        )
    except Exception as exc:  # noqa: BLE001 - Redis down or slow: let the request through
        log.warning("rate limit skipped, Redis unavailable: %s", exc)
        return wanted, 0.0
    return int(granted), float(wait)


class AgentRateThrottle(throttling.BaseThrottle):
    def allow_request(self, request, view) -> bool:
        if not isinstance(request.user, Agent):
            return True
        self._wait = take_token(request.user)
        return self._wait == 0

    def wait(self) -> float:
        return max(1.0, self._wait)
