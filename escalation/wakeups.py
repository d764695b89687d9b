"""Long-poll wake-ups through Redis pub/sub: a case reaching a terminal state publishes after
commit; a waiting long-poll subscribes before it first reads the case, so it cannot miss it.
Without REDIS_URL (or with Redis down) waiters fall back to a slow database poll."""

from __future__ import annotations

import contextlib
import logging

from django.conf import settings

from handoff.redis import get_redis, key_prefix

log = logging.getLogger("handoff.wakeups")


def channel(case_id) -> str:
    return f"{key_prefix()}:case:{case_id}"


def publish(case_id) -> None:
    """Best effort: a lost wake-up only delays a waiter until its next database check."""
    client = get_redis()
    if client is None:
        return
    try:
        client.publish(channel(case_id), "terminal")
    except Exception as exc:  # noqa: BLE001 - never fail a transition over a wake-up
        log.warning("wake-up for case %s not published: %s", case_id, exc)


class Subscription:
    def __init__(self, pubsub) -> None:
        self._pubsub = pubsub

    @property
    def has_redis(self) -> bool:
        return self._pubsub is not None

    async def wait(self, timeout: float) -> bool:
        """True if a wake-up arrived within `timeout` seconds."""
        if self._pubsub is None:
            import asyncio

            await asyncio.sleep(timeout)
            return False
        try:
            message = await self._pubsub.get_message(
                ignore_subscribe_messages=True, timeout=timeout
            )
        except Exception as exc:  # noqa: BLE001 - Redis went away: poll instead
            log.warning("wake-up subscription lost: %s", exc)
            self._pubsub = None
            return False
        return message is not None


@contextlib.asynccontextmanager
async def subscribe(case_id):
    """Yields a Subscription; without Redis its wait() is a plain sleep."""
    if not settings.REDIS_URL:
        yield Subscription(None)
        return
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=0.5)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(channel(case_id))
    except Exception as exc:  # noqa: BLE001
        log.warning("long-poll falls back to polling, Redis unavailable: %s", exc)
        pubsub = None
    try:
        yield Subscription(pubsub)
    finally:
        with contextlib.suppress(Exception):
            if pubsub is not None:
                await pubsub.aclose()
            await client.aclose()
