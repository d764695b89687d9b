"""Deciding a case from its page: approve, modify, reject, labels, and every way a decision is
refused (a clear message, nothing written, never a 500)."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from escalation import transitions
from escalation.audit import Actor
from escalation.models import AuditEvent, Escalation, Resolution, Status
from tests.factories import make_case
from tests.web.conftest import LABEL_SCHEMA
from tests.web.helpers import (
    HTMX,
    buttons,
    case_url,
    flashed,
    htmx_config,
    hx,
    label_block,
    shown_messages,
    text,
)

pytestmark = pytest.mark.django_db

PROPOSED = {"type": "refund", "amount": 1240, "currency": "EUR"}


def decide(client, case, decision="approve", token=None, follow=False, **fields):
    data = {"claim_token": str(token or case.claim_token), "decision": decision, "note": ""}
    data.update(fields)
    return client.post(case_url(case, "decide/"), data, follow=follow)


def assert_still_claimed_by(case, user) -> None:
    case.refresh_from_db()
    assert case.status == Status.CLAIMED and case.claimed_by == user
    assert not Resolution.objects.filter(escalation=case).exists()
    assert not AuditEvent.objects.filter(escalation=case, verb="escalation.resolved").exists()


# --- approve / modify / reject ---------------------------------------------------------------


def test_approve_does_the_proposed_action_and_opens_the_next_case(
    client, alice, claimed, agent, support
):
    upcoming = make_case(agent=agent, queue=support, summary="the next one")
    client.force_login(alice)

    response = decide(client, claimed, "approve", note="fine")

    assert response.status_code == 302
    assert response.url == f"/cases/{upcoming.pk}/"
    resolution = Resolution.objects.get(escalation=claimed)
    assert resolution.decision == "approve"
    assert resolution.final_action == PROPOSED
    assert resolution.note == "fine" and resolution.resolved_by == alice
    claimed.refresh_from_db()
    assert claimed.status == Status.RESOLVED
    upcoming.refresh_from_db()
    assert upcoming.status == Status.CLAIMED and upcoming.claimed_by == alice
    event = AuditEvent.objects.get(escalation=claimed, verb="escalation.resolved")
    assert event.actor_name == "alice" and event.data["decision"] == "approve"
    assert "Decided: approve." in flashed(response)


def test_approve_of_the_last_case_goes_back_to_the_inbox_with_a_message(client, alice, claimed):
    client.force_login(alice)

    response = client.post(
        case_url(claimed, "decide/"),
        {"claim_token": str(claimed.claim_token), "decision": "approve"},
        follow=True,
    )

    assert response.status_code == 200
    assert response.redirect_chain == [("/inbox/", 302)]
    assert Resolution.objects.get(escalation=claimed).decision == "approve"
    messages = shown_messages(response)
    assert "Decided: approve." in messages
    assert any("last open case" in m for m in messages)


def test_approve_by_htmx_answers_with_a_redirect_header(client, alice, claimed):
    client.force_login(alice)

    response = client.post(
        case_url(claimed, "decide/"),
        {"claim_token": str(claimed.claim_token), "decision": "approve"},
        headers=hx("decision"),
    )

    assert response.status_code == 200
    assert response["HX-Redirect"] == "/inbox/"
    assert Resolution.objects.get(escalation=claimed).decision == "approve"


def test_modify_with_invalid_json_is_refused_with_the_error_in_the_page(client, alice, claimed):
    client.force_login(alice)

    response = decide(client, claimed, "modify", final_action='{"type": "refund", amount: 5}')

    assert response.status_code == 422
    page = text(response)
    assert "not valid JSON" in page
    assert '<div class="field-error" role="alert">' in page
    assert "amount: 5" in page  # the reviewer's text is kept for correcting
    assert_still_claimed_by(claimed, alice)


def test_modify_with_a_json_array_is_refused(client, alice, claimed):
    client.force_login(alice)

    response = decide(client, claimed, "modify", final_action='[{"type": "refund"}]')

    assert response.status_code == 422
    assert "must be a JSON object" in text(response)
    assert_still_claimed_by(claimed, alice)


def test_modify_without_a_final_action_is_refused(client, alice, claimed):
    client.force_login(alice)

    response = decide(client, claimed, "modify", final_action="   ")

    assert response.status_code == 422
    assert "needs the final action as a JSON object" in text(response)
    assert_still_claimed_by(claimed, alice)


def test_modify_with_an_object_resolves_with_that_final_action(client, alice, claimed):
    client.force_login(alice)

    response = decide(
        client,
        claimed,
        "modify",
        final_action='{"type": "refund", "amount": 600, "currency": "EUR"}',
    )

    assert response.status_code == 302
    resolution = Resolution.objects.get(escalation=claimed)
    assert resolution.decision == "modify"
    assert resolution.final_action == {"type": "refund", "amount": 600, "currency": "EUR"}
    claimed.refresh_from_db()
    assert claimed.status == Status.RESOLVED


def test_reject_resolves_without_an_action(client, alice, claimed):
    client.force_login(alice)

    response = decide(client, claimed, "reject", note="policy says no")

    assert response.status_code == 302
    resolution = Resolution.objects.get(escalation=claimed)
    assert resolution.decision == "reject" and resolution.final_action is None
    assert resolution.note == "policy says no"


def test_an_unknown_decision_is_refused(client, alice, claimed):
    client.force_login(alice)

    response = decide(client, claimed, "maybe")

    assert response.status_code == 422
    assert_still_claimed_by(claimed, alice)


def test_the_modify_editor_starts_with_the_proposed_action(client, alice, claimed):
    client.force_login(alice)

    page = text(client.get(case_url(claimed)))

    editor = page.split('<textarea name="final_action"', 1)[1].split("</textarea>", 1)[0]
    assert "&quot;amount&quot;: 1240" in editor


# --- labels ----------------------------------------------------------------------------------


@pytest.fixture
def labelled(labelled_refunds, agent, as_alice):
    case = make_case(agent=agent, queue=labelled_refunds)
    return transitions.claim(actor=as_alice, case_id=case.pk)


def test_the_decision_form_labels_its_fields_with_the_schema_titles(client, alice, labelled):
    client.force_login(alice)

    response = client.get(case_url(labelled))

    assert response.status_code == 200
    assert '<label for="id_label_category">Refund category *</label>' in text(response)
    assert '<label for="id_label_refund_ok">Refund is justified</label>' in text(response)
    assert '<label for="id_label_amount">Amount refunded</label>' in text(response)
    assert "Case tags" in label_block(response, "tags")
    assert 'type="checkbox" name="label_tags" value="vip"' in label_block(response, "tags")
    assert 'value="chargeback"' in label_block(response, "tags")
    assert 'value="fraud"' in label_block(response, "category")


def test_the_label_fields_follow_the_schemas_property_order(client, alice, labelled):
    """labels.fields() promises property order; the admin chose it for the reviewer."""
    client.force_login(alice)

    page = text(client.get(case_url(labelled)))

    positions = [page.index(f'id="id_label_{name}"') for name in LABEL_SCHEMA["properties"]]
    assert positions == sorted(positions), list(LABEL_SCHEMA["properties"])


def test_a_missing_required_label_is_shown_next_to_it_and_nothing_is_written(
    client, alice, labelled
):
    client.force_login(alice)

    response = decide(client, labelled, "approve", label_amount="10")

    assert response.status_code == 422
    category = label_block(response, "category")
    assert 'class="field-error"' in category and "required" in category
    assert 'class="field-error"' not in label_block(response, "amount")
    assert_still_claimed_by(labelled, alice)


def test_an_out_of_range_number_label_is_refused(client, alice, labelled):
    client.force_login(alice)

    response = decide(client, labelled, "approve", label_category="goodwill", label_amount="6000")

    assert response.status_code == 422
    amount = label_block(response, "amount")
    assert 'class="field-error"' in amount and "5000" in amount
    assert_still_claimed_by(labelled, alice)


def test_a_negative_number_label_is_refused(client, alice, labelled):
    client.force_login(alice)

    response = decide(client, labelled, "approve", label_category="goodwill", label_amount="-1")

    assert response.status_code == 422
    assert 'class="field-error"' in label_block(response, "amount")
    assert_still_claimed_by(labelled, alice)


def test_a_choice_outside_the_enum_is_refused(client, alice, labelled):
    client.force_login(alice)

    response = decide(client, labelled, "approve", label_category="bribe")

    assert response.status_code == 422
    assert 'class="field-error"' in label_block(response, "category")
    assert_still_claimed_by(labelled, alice)


def test_valid_labels_are_stored_with_their_types(client, alice, labelled):
    client.force_login(alice)

    response = decide(
        client,
        labelled,
        "approve",
        label_category="goodwill",
        label_refund_ok="true",
        label_amount="120.5",
        label_tags=["vip", "repeat"],
    )

    assert response.status_code == 302
    labels = Resolution.objects.get(escalation=labelled).labels
    assert labels == {
        "category": "goodwill",
        "refund_ok": True,
        "amount": 120.5,
        "tags": ["vip", "repeat"],
    }
    assert labels["refund_ok"] is True
    event = AuditEvent.objects.get(escalation=labelled, verb="escalation.resolved")
    assert event.data["labels"] == labels


def test_a_false_boolean_and_a_zero_amount_are_kept(client, alice, labelled):
    client.force_login(alice)

    response = decide(
        client,
        labelled,
        "reject",
        label_category="fraud",
        label_refund_ok="false",
        label_amount="0",
    )

    assert response.status_code == 302
    labels = Resolution.objects.get(escalation=labelled).labels
    assert labels == {"category": "fraud", "refund_ok": False, "amount": 0}
    assert labels["refund_ok"] is False


def test_unanswered_optional_labels_are_left_out(client, alice, labelled):
    client.force_login(alice)

    response = decide(
        client, labelled, "approve", label_category="error", label_refund_ok="unknown"
    )

    assert response.status_code == 302
    assert Resolution.objects.get(escalation=labelled).labels == {"category": "error"}


# --- refused decisions -----------------------------------------------------------------------


def test_a_stale_claim_token_is_refused_with_a_message(client, alice, claimed):
    client.force_login(alice)

    response = decide(client, claimed, "approve", token=uuid.uuid4())

    assert response.status_code == 302
    assert response.url == case_url(claimed)
    assert any("claim" in m for m in flashed(response))
    assert_still_claimed_by(claimed, alice)


def test_a_garbage_claim_token_is_refused_with_a_visible_message(client, alice, claimed):
    client.force_login(alice)

    response = client.post(
        case_url(claimed, "decide/"),
        {"claim_token": "garbage", "decision": "approve"},
        follow=True,
    )

    assert response.status_code in (200, 422)
    assert_still_claimed_by(claimed, alice)
    page = text(response)
    # The refusal must be visible to the reviewer, not only attached to the hidden input.
    visible = shown_messages(response) + [
        part.split("</div>", 1)[0] for part in page.split('class="field-error"')[1:]
    ]
    visible += [
        part.split("</div>", 1)[0] for part in page.split('<div class="message error">')[1:]
    ]
    assert any("claim" in m.lower() or "valid" in m.lower() for m in visible), visible


def test_a_decision_after_the_lease_ran_out_is_refused(client, alice, claimed):
    expired_at = timezone.now() - timedelta(seconds=1)
    Escalation.objects.filter(pk=claimed.pk).update(lease_expires_at=expired_at)
    client.force_login(alice)

    response = decide(client, claimed, "approve", follow=True)

    assert response.status_code == 200
    assert response.redirect_chain == [(case_url(claimed), 302)]
    assert any("claim" in m for m in shown_messages(response))
    assert_still_claimed_by(claimed, alice)  # not swept yet, but fenced
    claimed.refresh_from_db()
    assert claimed.lease_expires_at == expired_at
    assert "Approve" not in buttons(response)


def test_the_same_decision_posted_twice_resolves_once_and_says_so(client, alice, claimed):
    client.force_login(alice)
    data = {"claim_token": str(claimed.claim_token), "decision": "approve", "note": ""}

    first = client.post(case_url(claimed, "decide/"), data)
    second = client.post(case_url(claimed, "decide/"), data, follow=True)

    assert first.status_code == 302
    assert second.status_code == 200
    assert second.redirect_chain == [(case_url(claimed), 302)]
    assert any("resolved" in m for m in shown_messages(second))
    assert Resolution.objects.filter(escalation=claimed).count() == 1
    assert AuditEvent.objects.filter(escalation=claimed, verb="escalation.resolved").count() == 1


def test_a_case_cancelled_by_its_agent_meanwhile_is_refused_with_a_message(
    client, alice, agent, claimed
):
    transitions.cancel(actor=Actor.for_agent(agent), case_id=claimed.pk, reason="customer left")
    client.force_login(alice)

    response = decide(client, claimed, "approve", follow=True)

    assert response.status_code == 200
    assert any("cancelled" in m for m in shown_messages(response))
    assert "Cancelled" in text(response)
    assert not Resolution.objects.filter(escalation=claimed).exists()
    claimed.refresh_from_db()
    assert claimed.status == Status.CANCELLED


def test_another_reviewer_cannot_decide_a_held_case(client, bob, alice, claimed):
    client.force_login(bob)

    response = decide(client, claimed, "approve")

    assert response.status_code == 302
    assert any("do not hold the claim" in m for m in flashed(response))
    assert_still_claimed_by(claimed, alice)


# --- htmx ------------------------------------------------------------------------------------


def test_htmx_decide_with_errors_answers_with_the_decision_fragment(client, alice, claimed):
    client.force_login(alice)

    response = client.post(
        case_url(claimed, "decide/"),
        {"claim_token": str(claimed.claim_token), "decision": "modify", "final_action": "{oops"},
        headers=hx("decision"),
    )

    assert response.status_code == 422
    fragment = text(response)
    assert "<html" not in fragment
    assert fragment.lstrip().startswith('<section class="card decide" id="decision">')
    assert "not valid JSON" in fragment
    assert_still_claimed_by(claimed, alice)


def test_htmx_decide_errors_come_with_a_status_htmx_swaps(client, alice, claimed):
    """htmx 2 does not swap 4xx responses unless its responseHandling says so: an error fragment
    sent as 422 never reaches the reviewer's screen."""
    client.force_login(alice)
    page = client.get(case_url(claimed))

    response = client.post(
        case_url(claimed, "decide/"),
        {"claim_token": str(claimed.claim_token), "decision": "modify", "final_action": "{oops"},
        headers=HTMX,
    )

    swapping = [
        rule
        for rule in htmx_config(page).get("responseHandling", [])
        if rule.get("swap") and re.fullmatch(rule["code"], str(response.status_code))
    ]
    assert response.status_code < 300 or swapping, (
        f"htmx drops a {response.status_code} fragment: the reviewer sees no error"
    )


def test_htmx_decide_after_the_lease_ran_out_redirects_to_the_case(client, alice, claimed):
    Escalation.objects.filter(pk=claimed.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    client.force_login(alice)

    response = client.post(
        case_url(claimed, "decide/"),
        {"claim_token": str(claimed.claim_token), "decision": "approve"},
        headers=HTMX,
    )

    assert response.status_code == 200
    assert response["HX-Redirect"] == case_url(claimed)
    assert any("claim" in m for m in flashed(response))
    assert_still_claimed_by(claimed, alice)
