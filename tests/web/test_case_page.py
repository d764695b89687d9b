"""The case page: everything a person needs to decide, and the buttons their role allows."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from escalation import transitions
from escalation.models import Escalation
from tests.factories import make_case
from tests.web.helpers import HTMX, buttons, case_url, hx, text

pytestmark = pytest.mark.django_db

LONG_TEXT = "The customer wrote at length. " * 34 + "THE END"  # over 1000 characters


@pytest.fixture
def rich_case(agent, refunds):
    return make_case(
        agent=agent,
        queue=refunds,
        summary="Refund of 1,240 EUR exceeds the auto-approve limit",
        confidence=0.42,
        priority="high",
        reason="low_confidence",
        external_id="ORD-7781",
        context={
            "conversation": [
                {"role": "customer", "text": "Where is my refund?"},
                {"role": "assistant", "text": "Let me look up order 7781."},
            ],
            "order": {"id": "A-1001", "items": [{"sku": "SKU-X1", "qty": 2}]},
            "letter": LONG_TEXT,
        },
        proposed_action={"type": "refund", "amount": 1240, "currency": "EUR"},
        metadata={"tier": "gold", "account_value": 18250},
    )


def test_the_case_page_shows_what_a_person_needs_to_decide(client, alice, rich_case):
    client.force_login(alice)

    response = client.get(case_url(rich_case))

    assert response.status_code == 200
    page = text(response)
    assert "<h1>Refund of 1,240 EUR exceeds the auto-approve limit</h1>" in page
    assert "<strong>42%</strong>" in page
    assert "<strong>low_confidence</strong>" in page
    assert "High" in page
    assert "ORD-7781" in page
    assert "<strong>Refunds</strong>" in page and "refund-bot" in page
    assert "claim due" in page and "resolve due" in page
    assert "Open" in page


def test_the_case_page_shows_the_proposed_action_as_a_json_tree(client, alice, rich_case):
    client.force_login(alice)

    page = text(client.get(case_url(rich_case)))

    proposal = page.split("<h2>Proposed action</h2>", 1)[1].split("</section>", 1)[0]
    assert '<details class="json" open>' in proposal
    assert '<span class="json-key">type</span>: <span class="json-str">refund</span>' in proposal
    assert '<span class="json-key">amount</span>: <span class="json-num">1240</span>' in proposal


def test_the_case_page_says_when_no_action_was_proposed(client, alice, agent, refunds):
    case = make_case(agent=agent, queue=refunds, proposed_action=None)
    client.force_login(alice)

    assert "The agent proposed no action." in text(client.get(case_url(case)))


def test_the_conversation_reads_as_a_transcript(client, alice, rich_case):
    client.force_login(alice)

    page = text(client.get(case_url(rich_case)))

    transcript = re.search(r'<ol class="transcript">(.*?)</ol>', page, re.S).group(1)
    assert '<li class="turn turn-customer"><span class="role">customer</span>' in transcript
    assert "Where is my refund?" in transcript
    assert '<li class="turn turn-assistant"><span class="role">assistant</span>' in transcript
    assert "Let me look up order 7781." in transcript


def test_other_context_keys_are_collapsible_json(client, alice, rich_case):
    client.force_login(alice)

    page = text(client.get(case_url(rich_case)))

    order = page.split("<h4>order</h4>", 1)[1].split("</section>", 1)[0]
    assert order.startswith("<details")
    assert "A-1001" in order and "SKU-X1" in order


def test_a_long_string_is_folded(client, alice, rich_case):
    assert len(LONG_TEXT) > 1000
    client.force_login(alice)

    page = text(client.get(case_url(rich_case)))

    folds = re.findall(r'<details class="fold">(.*?)</details>', page, re.S)
    assert any(LONG_TEXT in fold and "characters" in fold for fold in folds)


def test_metadata_is_shown(client, alice, rich_case):
    client.force_login(alice)

    page = text(client.get(case_url(rich_case)))

    metadata = page.split("<h2>Metadata</h2>", 1)[1].split("</section>", 1)[0]
    assert "tier" in metadata and "gold" in metadata and "18250" in metadata


def test_the_history_lists_the_audit_verbs(client, alice, as_alice, rich_case):
    transitions.claim(actor=as_alice, case_id=rich_case.pk)
    client.force_login(alice)

    page = text(client.get(case_url(rich_case)))

    history = page.split("<h2>History</h2>", 1)[1].split("</ol>", 1)[0]
    assert history.index("escalation.created") < history.index("escalation.claimed")
    assert "by alice" in history and "by refund-bot" in history


def test_context_updates_are_shown_on_the_page(client, alice, as_agent, rich_case):
    transitions.append_context(
        actor=as_agent, case_id=rich_case.pk, note="Customer sent a photo", data={"photo": "p.jpg"}
    )
    client.force_login(alice)

    page = text(client.get(case_url(rich_case)))

    updates = page.split('<section class="card" id="updates"', 1)[1].split("</section>", 1)[0]
    assert "Customer sent a photo" in updates and "p.jpg" in updates
    assert "?seen=1" in updates


def test_the_updates_poll_answers_204_until_a_new_update_arrives(
    client, alice, as_agent, rich_case
):
    client.force_login(alice)
    url = case_url(rich_case, "updates/")

    unchanged = client.get(f"{url}?seen=0", headers=hx("updates"))
    assert unchanged.status_code == 204
    assert "HX-Request" in unchanged["Vary"]

    transitions.append_context(
        actor=as_agent, case_id=rich_case.pk, note="The order was delivered late"
    )
    changed = client.get(f"{url}?seen=0", headers=hx("updates"))
    assert changed.status_code == 200
    assert "<html" not in text(changed)
    assert "The order was delivered late" in text(changed)
    assert "?seen=1" in text(changed)
    assert client.get(f"{url}?seen=1", headers=HTMX).status_code == 204


def test_the_updates_url_without_htmx_renders_the_updates(client, alice, rich_case):
    client.force_login(alice)

    response = client.get(case_url(rich_case, "updates/") + "?seen=0")

    assert response.status_code == 200
    assert "Context updates" in text(response)


def test_an_open_case_offers_claim_and_no_decision(client, alice, rich_case):
    client.force_login(alice)

    shown = buttons(client.get(case_url(rich_case)))

    assert "Claim" in shown
    for name in ("Approve", "Modify", "Reject", "Release"):
        assert name not in shown


def test_the_holder_can_approve_modify_reject_release_and_transfer(client, alice, claimed):
    client.force_login(alice)

    response = client.get(case_url(claimed))

    shown = buttons(response)
    for name in ("Approve", "Modify", "Reject", "Release", "Transfer"):
        assert name in shown
    assert "Claim" not in shown
    page = text(response)
    assert f'name="claim_token" value="{claimed.claim_token}"' in page
    assert "You hold this case until" in page
    assert "Claimed" in page


def test_another_reviewer_sees_who_holds_the_case_and_no_decision_form(client, bob, claimed):
    client.force_login(bob)

    response = client.get(case_url(claimed))

    assert response.status_code == 200
    shown = buttons(response)
    for name in ("Approve", "Modify", "Reject", "Release", "Claim"):
        assert name not in shown
    page = text(response)
    assert 'id="decision"' not in page
    assert "Claimed by alice" in page
    assert str(claimed.claim_token) not in page  # the token is the holder's alone


def test_the_manager_may_release_a_reviewers_claim(client, mona, claimed):
    client.force_login(mona)

    response = client.get(case_url(claimed))

    shown = buttons(response)
    assert "Release" in shown
    assert "Approve" not in shown
    assert str(claimed.claim_token) not in text(response)


def test_a_holder_whose_lease_ran_out_is_told_and_may_claim_again(client, alice, claimed):
    Escalation.objects.filter(pk=claimed.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    client.force_login(alice)

    response = client.get(case_url(claimed))

    shown = buttons(response)
    assert "Claim" in shown
    assert "Approve" not in shown
    assert "Your claim ran out" in text(response)


def test_a_resolved_case_shows_the_decision(client, alice, as_alice, claimed):
    transitions.resolve(
        actor=as_alice,
        case_id=claimed.pk,
        claim_token=claimed.claim_token,
        decision="reject",
        note="Outside the refund window",
    )
    client.force_login(alice)

    response = client.get(case_url(claimed))

    assert response.status_code == 200
    page = text(response)
    assert "<h2>Decision</h2>" in page and "<strong>Reject</strong> by alice" in page
    assert "Outside the refund window" in page
    assert "Resolved" in page
    shown = buttons(response)
    for name in ("Approve", "Claim", "Release", "Transfer"):
        assert name not in shown
