"""Next case: claims the most urgent open case in my queues and opens it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from escalation import transitions
from escalation.models import AuditEvent, Escalation, Status
from tests.factories import make_case
from tests.web.helpers import HTMX, flashed, shown_messages

pytestmark = pytest.mark.django_db


def test_next_case_claims_the_most_urgent_open_case_and_opens_it(
    client, alice, agent, refunds, support
):
    now = timezone.now()
    make_case(agent=agent, queue=refunds, summary="calm", priority="low", now=now)
    urgent = make_case(agent=agent, queue=support, summary="urgent", priority="urgent", now=now)
    client.force_login(alice)

    response = client.post("/inbox/next/")

    assert response.status_code == 302
    assert response.url == f"/cases/{urgent.pk}/"
    urgent.refresh_from_db()
    assert urgent.status == Status.CLAIMED and urgent.claimed_by == alice
    assert urgent.lease_expires_at > timezone.now() + timedelta(minutes=14)
    assert AuditEvent.objects.filter(escalation=urgent, verb="escalation.claimed").count() == 1


def test_next_case_skips_a_case_another_reviewer_holds(client, alice, as_bob, agent, refunds):
    now = timezone.now()
    first = make_case(agent=agent, queue=refunds, summary="first", now=now - timedelta(hours=2))
    second = make_case(agent=agent, queue=refunds, summary="second", now=now)
    transitions.claim(actor=as_bob, case_id=first.pk)
    client.force_login(alice)

    response = client.post("/inbox/next/")

    assert response.url == f"/cases/{second.pk}/"
    assert Escalation.objects.get(pk=first.pk).claimed_by.username == "bob"
    assert Escalation.objects.get(pk=second.pk).claimed_by == alice


def test_next_case_with_nothing_open_goes_back_to_the_inbox_with_a_message(client, alice, refunds):
    client.force_login(alice)

    response = client.post("/inbox/next/", follow=True)

    assert response.status_code == 200
    assert response.redirect_chain == [("/inbox/", 302)]
    assert any("no open case" in m for m in shown_messages(response))


def test_next_case_by_htmx_answers_with_a_redirect_header(client, alice, case):
    client.force_login(alice)

    response = client.post("/inbox/next/", headers=HTMX)

    assert response.status_code == 200
    assert response["HX-Redirect"] == f"/cases/{case.pk}/"
    case.refresh_from_db()
    assert case.claimed_by == alice


def test_next_case_by_htmx_with_nothing_open_redirects_to_the_inbox(client, alice, refunds):
    client.force_login(alice)

    response = client.post("/inbox/next/", headers=HTMX)

    assert response.status_code == 200
    assert response["HX-Redirect"] == "/inbox/"
    assert any("no open case" in m for m in flashed(response))


def test_next_case_never_claims_another_teams_case(client, alice, compliance_case, refunds):
    client.force_login(alice)

    response = client.post("/inbox/next/")

    assert response.status_code == 302
    assert response.url == "/inbox/"
    compliance_case.refresh_from_db()
    assert compliance_case.status == Status.OPEN and compliance_case.claimed_by is None


def test_next_case_takes_a_case_whose_lease_ran_out(client, alice, as_bob, case):
    transitions.claim(actor=as_bob, case_id=case.pk)
    Escalation.objects.filter(pk=case.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=5)
    )
    client.force_login(alice)

    response = client.post("/inbox/next/")

    assert response.url == f"/cases/{case.pk}/"
    case.refresh_from_db()
    assert case.claimed_by == alice
    verbs = list(
        AuditEvent.objects.filter(escalation=case).order_by("seq").values_list("verb", flat=True)
    )
    assert verbs[-2:] == ["escalation.lease_expired", "escalation.claimed"]
