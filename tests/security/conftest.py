"""Fixtures of the security tests: the fixed cast of tests/conftest.py, plus people of another
team (lena reviews and larry manages team legal), an agent the rate limit never stops (for the
fuzzers), and ops objects (a claimed case, a dead delivery, a learning-loop scope) for the access
checks."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from accounts.models import Role
from escalation import autonomy, transitions
from escalation.audit import Actor
from escalation.models import Delivery, DeliveryStatus

# Before tests.api.helpers: it registers that module for assertion rewriting.
from tests.api.conftest import redis_prefix  # noqa: F401 - the test's own Redis prefix
from tests.api.helpers import client_for
from tests.factories import AgentFactory, UserFactory, add_member, make_case


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


@pytest.fixture
def ops_objects(agent, refunds, alice):
    """An ops case (claimed by alice, with context), and a dead delivery of another."""
    case = make_case(agent=agent, queue=refunds, summary="Ops-only refund")
    transitions.append_context(actor=Actor.for_agent(agent), case_id=case.pk, note="more")
    held = transitions.claim(actor=Actor.for_user(alice), case_id=case.pk)
    delivered = make_case(agent=agent, queue=refunds)
    delivery = Delivery.objects.create(
        webhook_id=f"msg_{delivered.pk.hex[:8]}",
        escalation=delivered,
        agent=agent,
        event_type="escalation.resolved",
        url="https://agent.example.com/hook",
        body="{}",
        status=DeliveryStatus.DEAD,
        dead_at=timezone.now(),
    )
    scope = autonomy.scope_for(agent, "v1", refunds, timezone.now())
    return {"case": held, "delivery": delivery, "agent": agent, "scope": scope}
