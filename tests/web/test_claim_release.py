"""Claim, release and the lease heartbeat from the case page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from escalation import transitions
from escalation.models import AuditEvent, Escalation, Status
from tests.web.helpers import HTMX, case_url, flashed, hx, shown_messages, text

pytestmark = pytest.mark.django_db


def verbs(case) -> list[str]:
    return list(
        AuditEvent.objects.filter(escalation=case).order_by("seq").values_list("verb", flat=True)
    )


# --- claim -----------------------------------------------------------------------------------


def test_claim_from_the_case_page_gives_me_the_case(client, alice, case):
    client.force_login(alice)

    response = client.post(case_url(case, "claim/"))

    assert response.status_code == 302
    assert response.url == case_url(case)
    case.refresh_from_db()
    assert case.status == Status.CLAIMED and case.claimed_by == alice
    assert case.claim_token is not None
    assert case.lease_expires_at > timezone.now() + timedelta(minutes=14)
    assert verbs(case)[-1] == "escalation.claimed"


def test_claim_by_htmx_answers_with_a_redirect_header(client, alice, case):
    client.force_login(alice)

    response = client.post(case_url(case, "claim/"), headers=HTMX)

    assert response.status_code == 200
    assert response["HX-Redirect"] == case_url(case)
    case.refresh_from_db()
    assert case.claimed_by == alice


def test_claiming_a_case_bob_holds_is_refused_naming_bob(client, alice, bob, as_bob, case):
    held = transitions.claim(actor=as_bob, case_id=case.pk)
    client.force_login(alice)

    response = client.post(case_url(case, "claim/"), follow=True)

    assert response.status_code == 200
    assert response.redirect_chain == [(case_url(case), 302)]
    assert any("already claimed by bob" in m for m in shown_messages(response))
    case.refresh_from_db()
    assert case.claimed_by == bob and case.claim_token == held.claim_token
    assert verbs(case).count("escalation.claimed") == 1


def test_claiming_a_resolved_case_is_refused(client, alice, as_alice, claimed):
    transitions.resolve(
        actor=as_alice, case_id=claimed.pk, claim_token=claimed.claim_token, decision="reject"
    )
    client.force_login(alice)

    response = client.post(case_url(claimed, "claim/"))

    assert response.status_code == 302
    assert any("resolved" in m for m in flashed(response))
    claimed.refresh_from_db()
    assert claimed.status == Status.RESOLVED


# --- release ---------------------------------------------------------------------------------


def test_the_holder_releases_the_case_back_to_open(client, alice, claimed):
    due = claimed.claim_due_at
    client.force_login(alice)

    response = client.post(case_url(claimed, "release/"), {"claim_token": claimed.claim_token})

    assert response.status_code == 302
    assert response.url == "/inbox/"
    claimed.refresh_from_db()
    assert claimed.status == Status.OPEN
    assert claimed.claimed_by is None and claimed.claim_token is None
    assert claimed.claim_due_at == due  # a release keeps the due times
    event = AuditEvent.objects.filter(escalation=claimed).order_by("-seq").first()
    assert event.verb == "escalation.released"
    assert event.data == {"holder": "alice", "by_manager": False}
    assert any("Released" in m for m in flashed(response))


def test_bob_cannot_release_alices_claim(client, alice, bob, claimed):
    client.force_login(bob)

    response = client.post(case_url(claimed, "release/"), follow=True)

    assert response.status_code == 200
    assert response.redirect_chain == [(case_url(claimed), 302)]
    assert any("do not hold the claim" in m for m in shown_messages(response))
    claimed.refresh_from_db()
    assert claimed.status == Status.CLAIMED and claimed.claimed_by == alice
    assert "escalation.released" not in verbs(claimed)


def test_the_manager_releases_alices_claim(client, mona, claimed):
    client.force_login(mona)

    response = client.post(case_url(claimed, "release/"))

    assert response.status_code == 302
    assert response.url == "/inbox/"
    claimed.refresh_from_db()
    assert claimed.status == Status.OPEN and claimed.claimed_by is None
    event = AuditEvent.objects.filter(escalation=claimed).order_by("-seq").first()
    assert event.verb == "escalation.released" and event.actor_name == "mona"
    assert event.data == {"holder": "alice", "by_manager": True}


def test_the_holder_cannot_release_after_the_lease_ran_out(client, alice, claimed):
    Escalation.objects.filter(pk=claimed.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    client.force_login(alice)

    response = client.post(case_url(claimed, "release/"), {"claim_token": claimed.claim_token})

    assert response.status_code == 302
    assert response.url == case_url(claimed)
    assert any("claim" in m for m in flashed(response))
    assert "escalation.released" not in verbs(claimed)


def test_releasing_an_open_case_is_refused(client, alice, case):
    client.force_login(alice)

    response = client.post(case_url(case, "release/"))

    assert response.status_code == 302
    assert response.url == case_url(case)
    assert flashed(response)
    case.refresh_from_db()
    assert case.status == Status.OPEN


# --- heartbeat -------------------------------------------------------------------------------


def test_the_holders_heartbeat_extends_the_lease(client, alice, claimed):
    soon = timezone.now() + timedelta(seconds=30)
    Escalation.objects.filter(pk=claimed.pk).update(lease_expires_at=soon)
    client.force_login(alice)

    response = client.post(
        case_url(claimed, "heartbeat/"), {"claim_token": claimed.claim_token}, headers=hx("lease")
    )

    assert response.status_code == 200
    fragment = text(response)
    assert "<html" not in fragment and 'id="lease"' in fragment
    assert "You hold this case until" in fragment
    assert 'hx-trigger="every 60s"' in fragment  # it keeps beating
    claimed.refresh_from_db()
    assert claimed.lease_expires_at > timezone.now() + timedelta(minutes=14)
    assert claimed.claimed_by == alice and claimed.status == Status.CLAIMED


def test_a_heartbeat_after_the_lease_ran_out_does_not_revive_it(client, alice, claimed):
    expired_at = timezone.now() - timedelta(seconds=1)
    Escalation.objects.filter(pk=claimed.pk).update(lease_expires_at=expired_at)
    client.force_login(alice)

    response = client.post(
        case_url(claimed, "heartbeat/"), {"claim_token": claimed.claim_token}, headers=hx("lease")
    )

    assert response.status_code == 200
    fragment = text(response)
    assert "<html" not in fragment
    assert 'class="message error"' in fragment and "claim" in fragment
    assert "hx-trigger" not in fragment  # the page stops beating
    claimed.refresh_from_db()
    assert claimed.lease_expires_at == expired_at
    assert claimed.status == Status.CLAIMED


def test_another_reviewers_heartbeat_does_not_extend_the_lease(client, bob, claimed):
    before = claimed.lease_expires_at
    client.force_login(bob)

    response = client.post(
        case_url(claimed, "heartbeat/"), {"claim_token": claimed.claim_token}, headers=hx("lease")
    )

    assert response.status_code == 200
    assert 'class="message error"' in text(response)
    claimed.refresh_from_db()
    assert claimed.lease_expires_at == before
