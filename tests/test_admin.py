"""The admin's actions go through the same audited domain functions as the commands."""

from __future__ import annotations

import pytest
from django.utils import timezone

from escalation.models import AgentKey, AuditEvent, Delivery, DeliveryStatus
from tests.factories import UserFactory, make_case

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(admin)
    return client


def test_the_create_key_action_shows_a_working_key_once_and_audits_it(admin_client, agent):
    response = admin_client.post(
        "/admin/escalation/agent/",
        {"action": "create_api_key", "_selected_action": [agent.pk]},
        follow=True,
    )
    text = " ".join(str(m) for m in response.context["messages"])
    raw = text.split(": ")[-1].strip()
    assert AgentKey.authenticate(raw).agent == agent
    event = AuditEvent.objects.get(verb="agent.key_created")
    assert event.actor_name == "root" and raw not in str(event.data)


def test_the_revoke_action_revokes_and_audits(admin_client, agent):
    key, raw = AgentKey.generate(agent)
    admin_client.post(
        "/admin/escalation/agentkey/",
        {"action": "revoke", "_selected_action": [key.pk]},
        follow=True,
    )
    assert AgentKey.authenticate(raw) is None
    assert AuditEvent.objects.get(verb="agent.key_revoked").data["prefix"] == key.prefix
    response = admin_client.post(
        "/admin/escalation/agentkey/",
        {"action": "revoke", "_selected_action": [key.pk]},
        follow=True,
    )
    assert "already revoked" in " ".join(str(m) for m in response.context["messages"])


def test_the_redeliver_action_requeues_a_dead_delivery(admin_client, agent, refunds, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False  # the attempt itself is not this test's subject
    case = make_case(agent=agent, queue=refunds)
    dead = Delivery.objects.create(
        webhook_id="msg_admin",
        escalation=case,
        agent=agent,
        event_type="escalation.resolved",
        url="https://x.example/",
        body="{}",
        status=DeliveryStatus.DEAD,
        dead_at=timezone.now(),
    )
    admin_client.post(
        "/admin/escalation/delivery/",
        {"action": "redeliver", "_selected_action": [dead.pk]},
        follow=True,
    )
    dead.refresh_from_db()
    assert dead.status == DeliveryStatus.PENDING
    assert AuditEvent.objects.get(verb="delivery.redelivered").actor_name == "root"


def test_cases_and_audit_events_cannot_be_edited_or_deleted_in_the_admin(admin_client, case):
    event = AuditEvent.objects.filter(escalation=case).first()
    assert admin_client.get(f"/admin/escalation/escalation/{case.pk}/delete/").status_code == 403
    assert (
        admin_client.post(f"/admin/escalation/auditevent/{event.pk}/change/", {}).status_code == 403
    )
