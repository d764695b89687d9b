"""Which outcomes owe the agent a webhook, where it goes, and what it carries: a resolved,
expired or manager-cancelled case gets one Delivery; an agent's own cancel gets none; the
case's callback_url overrides its agent's; the body is the case resource without context and
metadata, signed per Standard Webhooks."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from escalation import delivery, transitions
from escalation.models import Delivery, DeliveryStatus
from tests.delivery.helpers import (
    attempt_log,
    audit_data,
    delivery_of,
    delivery_verbs,
    fresh,
    resolve,
    seconds,
)
from tests.factories import make_case

pytestmark = pytest.mark.django_db


def test_a_resolved_case_sends_one_signed_webhook_with_the_slim_case_resource(
    hooked_agent, refunds, alice, receiver
):
    case = make_case(
        agent=hooked_agent,
        queue=refunds,
        metadata={"account_value": 125000},
        external_id="ticket-8812",
    )
    resolve(case, alice, decision="modify", final_action={"type": "refund", "amount": 900})

    item = delivery_of(case)
    assert item.event_type == "escalation.resolved"
    assert item.url == receiver.url()
    assert item.status == DeliveryStatus.PENDING and item.attempts == 0
    assert item.webhook_id.startswith("msg_")
    assert receiver.received() == [], "delivery must not happen in the closing request"

    assert delivery.attempt(item.pk) == "succeeded"

    [request] = receiver.received()
    assert request.method == "POST" and request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == item.webhook_id
    assert request.body.decode() == item.body
    payload = request.verify(hooked_agent.webhook_secret)
    assert set(payload) == {"type", "timestamp", "data"}
    assert payload["type"] == "escalation.resolved"
    assert datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00")).tzinfo
    data = payload["data"]
    assert "context" not in data and "metadata" not in data
    assert data["id"] == str(case.pk)
    assert data["status"] == "resolved"
    assert data["external_id"] == "ticket-8812"
    assert data["url"].endswith(f"/api/v1/escalations/{case.pk}")
    assert data["resolution"]["decision"] == "modify"
    assert data["resolution"]["final_action"] == {"type": "refund", "amount": 900}
    assert data["resolution"]["resolved_by"] == "alice"

    done = fresh(item)
    assert done.status == DeliveryStatus.SUCCEEDED
    assert done.attempts == 1 and done.last_status_code == 200 and done.last_error == ""
    assert done.delivered_at is not None and done.locked_until is None
    assert attempt_log(item) == [(1, 200, "")]
    assert delivery_verbs(case) == ["delivery.succeeded"]
    [facts] = audit_data(case, "delivery.succeeded")
    assert facts["webhook_id"] == item.webhook_id and facts["status_code"] == 200


def test_the_signature_covers_the_body_a_tampered_body_does_not_verify(
    hooked_agent, refunds, alice, receiver
):
    case = make_case(agent=hooked_agent, queue=refunds)
    resolve(case, alice)
    assert delivery.attempt(delivery_of(case).pk) == "succeeded"

    [request] = receiver.received()
    request.verify(hooked_agent.webhook_secret)
    tampered = request.body.replace(b'"approve"', b'"reject"')
    assert tampered != request.body
    with pytest.raises(WebhookVerificationError):
        Webhook(hooked_agent.webhook_secret).verify(tampered, request.headers)


def test_an_expired_case_sends_escalation_expired(hooked_agent, refunds, receiver):
    case = make_case(agent=hooked_agent, queue=refunds)
    at = case.expires_at + seconds(1)
    assert transitions.expire(case_id=case.pk, now=at) is not None

    item = delivery_of(case)
    assert item.event_type == "escalation.expired"
    assert delivery.attempt(item.pk, now=at) == "succeeded"
    [request] = receiver.received()
    payload = request.verify(hooked_agent.webhook_secret)
    assert payload["type"] == "escalation.expired"
    assert payload["data"]["status"] == "expired"
    assert payload["data"]["resolution"] is None
    assert "context" not in payload["data"] and "metadata" not in payload["data"]


def test_a_case_cancelled_by_a_manager_sends_escalation_cancelled(
    hooked_agent, refunds, as_mona, receiver
):
    case = make_case(agent=hooked_agent, queue=refunds)
    transitions.cancel(actor=as_mona, case_id=case.pk, reason="duplicate of ticket-8811")

    item = delivery_of(case)
    assert item.event_type == "escalation.cancelled"
    assert delivery.attempt(item.pk) == "succeeded"
    [request] = receiver.received()
    payload = request.verify(hooked_agent.webhook_secret)
    assert payload["type"] == "escalation.cancelled"
    assert payload["data"]["status"] == "cancelled"
    assert payload["data"]["cancel_reason"] == "duplicate of ticket-8811"


def test_a_case_cancelled_by_its_own_agent_sends_nothing(hooked_agent, refunds, as_agent, receiver):
    case = make_case(agent=hooked_agent, queue=refunds)
    transitions.cancel(actor=as_agent, case_id=case.pk, reason="customer came back")

    assert not Delivery.objects.filter(escalation_id=case.pk).exists()
    assert delivery_verbs(case) == []


def test_no_callback_url_anywhere_means_no_delivery(agent, refunds, alice):
    assert agent.callback_url == ""
    case = make_case(agent=agent, queue=refunds)
    resolve(case, alice)

    assert not Delivery.objects.filter(escalation_id=case.pk).exists()


def test_the_cases_callback_url_overrides_the_agents(
    hooked_agent, refunds, alice, receiver, make_receiver
):
    own = make_receiver(200)
    case = make_case(agent=hooked_agent, queue=refunds, callback_url=own.url("/case-hook"))
    resolve(case, alice)

    item = delivery_of(case)
    assert item.url == own.url("/case-hook")
    assert delivery.attempt(item.pk) == "succeeded"
    [request] = own.received()
    assert request.path == "/case-hook"
    request.verify(hooked_agent.webhook_secret)
    assert receiver.received() == [] and receiver.connections == 0


def test_the_case_callback_alone_is_enough(agent, refunds, alice, receiver):
    case = make_case(agent=agent, queue=refunds, callback_url=receiver.url())
    resolve(case, alice)

    assert delivery.attempt(delivery_of(case).pk) == "succeeded"
    [request] = receiver.received()
    request.verify(agent.webhook_secret)


def test_every_closed_case_gets_its_own_webhook_id(hooked_agent, refunds, alice, receiver):
    cases = [make_case(agent=hooked_agent, queue=refunds) for _ in range(3)]
    for case in cases:
        resolve(case, alice)
    items = [delivery_of(case) for case in cases]
    for item in items:
        assert delivery.attempt(item.pk, now=timezone.now()) == "succeeded"

    ids = [request.webhook_id for request in receiver.received()]
    assert sorted(ids) == sorted(item.webhook_id for item in items)
    assert len(set(ids)) == 3
