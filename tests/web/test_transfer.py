"""Transfer: a case moves to another queue, open there with that queue's due times."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from escalation import transitions
from escalation.models import AuditEvent, Escalation, Status, Transfer
from tests.factories import make_case
from tests.web.helpers import case_url, flashed, shown_messages

pytestmark = pytest.mark.django_db


@pytest.fixture
def old_claim(agent, refunds, as_alice):
    """A case posted 40 minutes ago and claimed by alice."""
    case = make_case(agent=agent, queue=refunds, now=timezone.now() - timedelta(minutes=40))
    return transitions.claim(actor=as_alice, case_id=case.pk)


def test_the_holder_transfers_with_a_reason(client, alice, old_claim, support):
    before = Escalation.objects.get(pk=old_claim.pk)
    client.force_login(alice)

    response = client.post(
        case_url(old_claim, "transfer/"),
        {"queue": "support", "reason": "a password problem", "claim_token": old_claim.claim_token},
    )

    assert response.status_code == 302
    assert response.url == "/inbox/"
    case = Escalation.objects.get(pk=old_claim.pk)
    assert case.queue == support and case.status == Status.OPEN
    assert case.claimed_by is None and case.claim_token is None
    assert case.entered_queue_at > before.entered_queue_at
    assert case.claim_due_at == case.entered_queue_at + timedelta(hours=1)
    assert case.claim_due_at > before.claim_due_at
    assert case.next_due_at == case.claim_due_at
    assert case.expires_at == before.expires_at  # expiry stays
    event = AuditEvent.objects.filter(escalation=case).order_by("-seq").first()
    assert event.verb == "escalation.transferred" and event.actor_name == "alice"
    assert event.data == {
        "from_queue": "refunds",
        "to_queue": "support",
        "reason": "a password problem",
    }
    assert Transfer.objects.get(escalation=case).reason == "a password problem"
    assert any("Transferred to Support" in m for m in flashed(response))


def test_transfer_to_an_unknown_queue_changes_nothing(client, alice, claimed, support):
    client.force_login(alice)

    response = client.post(
        case_url(claimed, "transfer/"),
        {"queue": "no-such-queue", "reason": "x", "claim_token": claimed.claim_token},
        follow=True,
    )

    assert response.status_code == 200
    assert response.redirect_chain == [(case_url(claimed), 302)]
    assert any("Choose a queue" in m for m in shown_messages(response))
    claimed.refresh_from_db()
    assert claimed.queue.slug == "refunds" and claimed.status == Status.CLAIMED
    assert claimed.claimed_by == alice
    assert not Transfer.objects.exists()
    assert not AuditEvent.objects.filter(verb="escalation.transferred").exists()


def test_transfer_to_the_same_queue_is_refused(client, alice, claimed, support):
    client.force_login(alice)

    response = client.post(
        case_url(claimed, "transfer/"),
        {"queue": "refunds", "claim_token": claimed.claim_token},
    )

    assert response.status_code == 302
    assert flashed(response)
    claimed.refresh_from_db()
    assert claimed.status == Status.CLAIMED and claimed.claimed_by == alice
    assert not Transfer.objects.exists()


def test_a_reviewer_of_the_queue_transfers_an_open_case(client, bob, case, support):
    client.force_login(bob)

    response = client.post(case_url(case, "transfer/"), {"queue": "support", "reason": "misfiled"})

    assert response.status_code == 302
    case.refresh_from_db()
    assert case.queue == support and case.status == Status.OPEN
    event = AuditEvent.objects.get(escalation=case, verb="escalation.transferred")
    assert event.actor_name == "bob" and event.data["reason"] == "misfiled"


def test_bob_cannot_transfer_alices_claimed_case(client, alice, bob, claimed, support):
    client.force_login(bob)

    response = client.post(case_url(claimed, "transfer/"), {"queue": "support"})

    assert response.status_code == 302
    assert any("do not hold the claim" in m for m in flashed(response))
    claimed.refresh_from_db()
    assert claimed.queue.slug == "refunds" and claimed.claimed_by == alice


def test_the_holder_cannot_transfer_after_the_lease_ran_out(client, alice, claimed, support):
    Escalation.objects.filter(pk=claimed.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    client.force_login(alice)

    response = client.post(
        case_url(claimed, "transfer/"), {"queue": "support", "claim_token": claimed.claim_token}
    )

    assert response.status_code == 302
    assert any("claim" in m for m in flashed(response))
    claimed.refresh_from_db()
    assert claimed.queue.slug == "refunds"
    assert not Transfer.objects.exists()


def test_the_manager_transfers_a_claimed_case(client, mona, claimed, support):
    client.force_login(mona)

    response = client.post(case_url(claimed, "transfer/"), {"queue": "support", "reason": "load"})

    assert response.status_code == 302
    claimed.refresh_from_db()
    assert claimed.queue == support and claimed.status == Status.OPEN
    assert claimed.claimed_by is None


def test_the_transfer_form_lists_the_other_active_queues(client, alice, claimed, support):
    client.force_login(alice)

    page = client.get(case_url(claimed)).content.decode()

    form = page.split("<h2>Transfer</h2>", 1)[1].split("</form>", 1)[0]
    assert '<option value="support">' in form
    assert '<option value="refunds">' not in form
    assert f'name="claim_token" value="{claimed.claim_token}"' in form
