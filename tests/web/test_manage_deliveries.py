"""/manage/deliveries/: managers see their queues' deliveries, dead first, and can redeliver."""

from __future__ import annotations

import pytest
from django.utils import timezone

from escalation.models import AuditEvent, Delivery, DeliveryStatus
from tests.factories import make_case

pytestmark = pytest.mark.django_db


def delivery_for(case, status: str, **fields) -> Delivery:
    return Delivery.objects.create(
        webhook_id=f"msg_{status}_{case.pk.hex[:8]}",
        escalation=case,
        agent=case.agent,
        event_type="escalation.resolved",
        url="https://agent.example.com/hook",
        body="{}",
        status=status,
        **fields,
    )


@pytest.fixture
def dead(agent, refunds):
    return delivery_for(
        make_case(agent=agent, queue=refunds),
        DeliveryStatus.DEAD,
        dead_at=timezone.now(),
        attempts=12,
        last_error="no success",
    )


@pytest.fixture
def sent(agent, refunds):
    return delivery_for(
        make_case(agent=agent, queue=refunds),
        DeliveryStatus.SUCCEEDED,
        delivered_at=timezone.now(),
        attempts=1,
        last_status_code=200,
    )


def test_a_manager_sees_dead_deliveries_first(client, mona, dead, sent):
    client.force_login(mona)
    page = client.get("/manage/deliveries/").content.decode()
    assert page.index(dead.escalation.summary[:20]) < page.index("Succeeded")
    assert "1 dead" in page and "Redeliver" in page


def test_a_manager_redelivers_a_dead_delivery(client, mona, dead, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False  # keep the attempt itself out of this test
    client.force_login(mona)
    response = client.post(f"/manage/deliveries/{dead.pk}/redeliver/")
    assert response.status_code == 302
    dead.refresh_from_db()
    assert dead.status == DeliveryStatus.PENDING and dead.attempts == 0
    event = AuditEvent.objects.filter(verb="delivery.redelivered").get()
    assert event.actor_name == "mona" and event.data["webhook_id"] == dead.webhook_id


def test_reviewers_and_outsiders_may_not_see_or_redeliver(client, alice, outsider, dead):
    for person in (alice, outsider):
        client.force_login(person)
        assert client.get("/manage/deliveries/").status_code == 403
        assert client.post(f"/manage/deliveries/{dead.pk}/redeliver/").status_code == 403
    dead.refresh_from_db()
    assert dead.status == DeliveryStatus.DEAD


def test_a_manager_of_another_team_cannot_touch_these_deliveries(client, legal, dead):
    from tests.factories import UserFactory, add_member

    lawyer = UserFactory(username="lars")
    add_member(lawyer, legal, "manager")
    client.force_login(lawyer)
    assert dead.escalation.summary[:20] not in client.get("/manage/deliveries/").content.decode()
    assert client.post(f"/manage/deliveries/{dead.pk}/redeliver/").status_code == 404


def test_the_pages_need_login_and_the_right_method(client, mona, dead):
    assert client.get("/manage/deliveries/").status_code == 302
    client.force_login(mona)
    assert client.post("/manage/deliveries/").status_code == 405
    assert client.get(f"/manage/deliveries/{dead.pk}/redeliver/").status_code == 405


def test_only_managers_get_the_deliveries_link(client, mona, alice):
    client.force_login(alice)
    assert "/manage/deliveries/" not in client.get("/inbox/").content.decode()
    client.force_login(mona)
    assert "/manage/deliveries/" in client.get("/inbox/").content.decode()
