"""API fixtures: a bearer-key client for each agent of the fixed cast, and an isolated
rate-limit bucket for the tests that drain one."""

from __future__ import annotations

import uuid

import pytest

pytest.register_assert_rewrite("tests.api.helpers")

from handoff.redis import get_redis  # noqa: E402
from tests.api.helpers import client_for  # noqa: E402
from tests.factories import AgentFactory  # noqa: E402


@pytest.fixture
def api(agent, refunds, support, compliance):
    """refund-bot's client; the three queues exist so every endpoint has something to show."""
    return client_for(agent)


@pytest.fixture
def other_api(other_agent, refunds):
    return client_for(other_agent)


@pytest.fixture
def redis_prefix(settings):
    """A Redis key prefix of this test's own (rate buckets, wake-ups), deleted afterwards."""
    prefix = f"handoff-test-{uuid.uuid4().hex[:12]}"
    default = {**settings.CACHES["default"], "KEY_PREFIX": prefix}
    settings.CACHES = {**settings.CACHES, "default": default}
    yield prefix
    client = get_redis()
    if client is not None:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)


@pytest.fixture
def slow_agent(db, refunds, redis_prefix):
    """A fresh agent allowed two requests, then one every 100 s."""
    agent = AgentFactory(
        name=f"slow-bot-{uuid.uuid4().hex[:8]}", rate_per_second=0.01, rate_burst=2
    )
    yield agent
    client = get_redis()
    if client is not None:
        client.delete(f"{redis_prefix}:rate:{agent.pk}")
