"""Fixtures of the security tests: the fixed cast of tests/conftest.py, plus people of another
team (lena reviews and larry manages team legal), an agent the rate limit never stops (for the
fuzzers), and the hostile strings every agent-supplied field is tried with."""

from __future__ import annotations

import uuid

import pytest

from accounts.models import Role
from tests.api.helpers import client_for
from tests.factories import AgentFactory, UserFactory, add_member


@pytest.fixture
def lena(legal, compliance):
    user = UserFactory(username="lena")
    add_member(user, legal, Role.REVIEWER)
    return user


@pytest.fixture
def larry(legal, compliance):
    user = UserFactory(username="larry")
    add_member(user, legal, Role.MANAGER)
    return user


@pytest.fixture
def tireless_agent(db, refunds):
    """An agent whose rate limit a bounded fuzz run never reaches (a 429 would hide the rest)."""
    return AgentFactory(
        name=f"fuzz-bot-{uuid.uuid4().hex[:8]}", rate_per_second=1e6, rate_burst=1_000_000
    )


@pytest.fixture
def fuzz_api(tireless_agent):
    return client_for(tireless_agent)
