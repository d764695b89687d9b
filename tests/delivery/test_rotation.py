"""Rotating an agent's signing secret: the new whsec_ secret is printed once (the last line);
for 24 h every webhook carries two space-separated v1 signatures, one per secret, so a
receiver still holding the old secret keeps verifying; after that only the new one signs."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from escalation import delivery
from escalation.models import Agent, AuditEvent
from tests.delivery.helpers import delivery_of, resolve, seconds
from tests.delivery.receiver import Received
from tests.factories import make_case

pytestmark = pytest.mark.django_db


def _rotate(agent) -> str:
    out = io.StringIO()
    call_command("rotate_webhook_secret", agent=agent.name, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def _verifies(request: Received, secret: str, signature: str | None = None) -> bool:
    headers = dict(request.headers)
    if signature is not None:
        headers["webhook-signature"] = signature
    try:
        Webhook(secret).verify(request.body, headers)
    except WebhookVerificationError:
        return False
    return True


def test_rotation_signs_with_both_secrets_for_a_day_then_with_the_new_one_alone(
    hooked_agent, refunds, alice, receiver
):
    old = hooked_agent.webhook_secret
    # A delivery scheduled before the rotation is signed at attempt time, with both.
    before = make_case(agent=hooked_agent, queue=refunds)
    resolve(before, alice)

    new = _rotate(hooked_agent)

    assert new.startswith("whsec_") and new != old
    agent = Agent.objects.get(pk=hooked_agent.pk)
    assert agent.webhook_secret == new
    assert agent.previous_webhook_secret == old
    overlap = agent.previous_secret_expires_at - timezone.now()
    assert seconds(24 * 3600 - 60) < overlap <= seconds(24 * 3600)
    rotated = AuditEvent.objects.get(verb="agent.webhook_secret_rotated")
    assert new not in str(rotated.data) and old not in str(rotated.data)

    assert delivery.attempt(delivery_of(before).pk) == "succeeded"
    [request] = receiver.received()
    signatures = request.signatures
    assert len(signatures) == 2 and all(sig.startswith("v1,") for sig in signatures)
    # Each signature verifies with exactly one of the secrets, and each secret has its own.
    owners = [[s for s in (old, new) if _verifies(request, s, sig)] for sig in signatures]
    assert sorted(owners) == sorted([[old], [new]]), owners
    assert _verifies(request, old) and _verifies(request, new)
    assert not _verifies(request, Agent().webhook_secret)  # a stranger's secret does not

    # A day later the old secret no longer signs.
    Agent.objects.filter(pk=agent.pk).update(previous_secret_expires_at=timezone.now() - seconds(1))
    after = make_case(agent=hooked_agent, queue=refunds)
    resolve(after, alice)
    assert delivery.attempt(delivery_of(after).pk) == "succeeded"
    latest = receiver.received()[-1]
    assert len(latest.signatures) == 1 and latest.signatures[0].startswith("v1,")
    assert _verifies(latest, new)
    assert not _verifies(latest, old)


def test_a_second_rotation_drops_the_oldest_secret(hooked_agent, refunds, alice, receiver):
    first = hooked_agent.webhook_secret
    second = _rotate(hooked_agent)
    third = _rotate(hooked_agent)
    case = make_case(agent=hooked_agent, queue=refunds)
    resolve(case, alice)

    assert delivery.attempt(delivery_of(case).pk) == "succeeded"

    [request] = receiver.received()
    assert len(request.signatures) == 2
    assert _verifies(request, third) and _verifies(request, second)
    assert not _verifies(request, first)


def test_rotating_an_unknown_agent_fails_with_a_reason(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no agent named ghost"):
        call_command("rotate_webhook_secret", agent="ghost", stdout=io.StringIO())
