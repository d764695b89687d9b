"""POST /api/v1/escalations/{id}/context and /cancel: an agent adds to or withdraws its own
open case; a terminal case is a 409 and another agent's case a 404, with nothing written."""

from __future__ import annotations

import uuid

import pytest

from escalation import transitions
from escalation.models import AuditEvent, ContextUpdate, Escalation, Queue, Status
from tests.api.helpers import (
    CASE_FIELDS,
    assert_error,
    case_path,
    post_json,
    resolve_case,
    row_counts,
    verbs,
)
from tests.factories import make_case

pytestmark = pytest.mark.django_db


# --- context ---------------------------------------------------------------------------------


def test_context_is_appended_with_201_and_audited(api, case):
    response = post_json(
        api,
        case_path(case, "/context"),
        {"note": "customer sent the receipt", "data": {"receipt": "R-1"}},
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "note", "data", "created_at"}
    assert body["note"] == "customer sent the receipt"
    assert body["data"] == {"receipt": "R-1"}
    update = ContextUpdate.objects.get()
    assert update.pk == body["id"]
    assert update.escalation_id == case.pk
    assert update.data == {"receipt": "R-1"}
    assert verbs(case) == ["escalation.created", "escalation.context_added"]
    event = AuditEvent.objects.get(escalation=case, verb="escalation.context_added")
    assert event.actor_name == "refund-bot"
    assert "receipt" not in str(event.data)  # a hash of the content, never the content


def test_context_may_be_added_to_a_claimed_case(api, case, as_alice):
    transitions.claim(actor=as_alice, case_id=case.pk)

    response = post_json(api, case_path(case, "/context"), {"note": "more"})

    assert response.status_code == 201
    assert ContextUpdate.objects.filter(escalation=case).count() == 1
    assert Escalation.objects.get(pk=case.pk).status == Status.CLAIMED


def test_context_note_and_data_are_optional(api, case):
    response = post_json(api, case_path(case, "/context"), {})

    assert response.status_code == 201
    assert response.json()["note"] == ""
    assert response.json()["data"] == {}


@pytest.mark.parametrize(
    "body, field",
    [
        pytest.param({"note": "x", "extra": 1}, "extra", id="unknown-field"),
        pytest.param({"data": [1, 2]}, "data", id="data-a-list"),
        pytest.param({"data": "text"}, "data", id="data-a-string"),
        pytest.param({"data": None}, "data", id="data-null"),
        pytest.param({"note": 5}, "note", id="note-a-number"),
    ],
)
def test_context_refuses_an_invalid_body(api, case, body, field):
    before = row_counts()

    response = post_json(api, case_path(case, "/context"), body)

    error = assert_error(response, 400, "invalid")
    assert field in error["fields"]
    assert row_counts() == before


def test_context_refuses_a_body_that_is_not_an_object(api, case):
    before = row_counts()

    response = post_json(api, case_path(case, "/context"), ["note"])

    assert_error(response, 400, "invalid")
    assert row_counts() == before


@pytest.mark.parametrize("end", ["resolved", "cancelled"])
def test_context_on_a_terminal_case_is_a_409(api, case, as_agent, alice, end):
    if end == "resolved":
        resolve_case(case, alice)
    else:
        transitions.cancel(actor=as_agent, case_id=case.pk)
    before = row_counts()

    response = post_json(api, case_path(case, "/context"), {"note": "too late"})

    assert_error(response, 409, "illegal_transition")
    assert row_counts() == before


def test_context_on_another_agents_case_is_a_404(other_api, case):
    before = row_counts()

    response = post_json(other_api, case_path(case, "/context"), {"note": "not mine"})

    assert_error(response, 404, "not_found")
    assert row_counts() == before


def test_context_on_no_such_case_is_a_404(api):
    response = post_json(api, case_path("not-a-uuid", "/context"), {"note": "x"})

    assert_error(response, 404, "not_found")


# --- cancel ----------------------------------------------------------------------------------


def test_cancel_withdraws_the_case_and_answers_it(api, case):
    response = post_json(api, case_path(case, "/cancel"), {"reason": "customer withdrew"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) >= CASE_FIELDS
    assert body["id"] == str(case.pk)
    assert body["status"] == "cancelled"
    assert body["resolution"] is None
    case.refresh_from_db()
    assert case.status == Status.CANCELLED
    assert case.cancel_reason == "customer withdrew"
    assert case.cancelled_by_agent is True
    assert verbs(case) == ["escalation.created", "escalation.cancelled"]
    event = AuditEvent.objects.get(escalation=case, verb="escalation.cancelled")
    assert event.actor_kind == "agent"
    assert event.data["reason"] == "customer withdrew"


def test_cancel_needs_no_reason(api, case):
    response = post_json(api, case_path(case, "/cancel"), {})

    assert response.status_code == 200
    assert Escalation.objects.get(pk=case.pk).status == Status.CANCELLED


def test_cancel_withdraws_a_claimed_case_too(api, case, as_alice):
    transitions.claim(actor=as_alice, case_id=case.pk)

    response = post_json(api, case_path(case, "/cancel"), {"reason": "solved elsewhere"})

    assert response.status_code == 200
    case.refresh_from_db()
    assert case.status == Status.CANCELLED
    assert case.claim_token is None
    assert case.lease_expires_at is None


def test_cancelling_twice_is_a_409(api, case):
    first = post_json(api, case_path(case, "/cancel"), {"reason": "x"})
    before = row_counts()

    second = post_json(api, case_path(case, "/cancel"), {"reason": "again"})

    assert first.status_code == 200
    assert_error(second, 409, "illegal_transition")
    assert row_counts() == before
    assert Escalation.objects.get(pk=case.pk).cancel_reason == "x"


def test_cancelling_a_resolved_case_is_a_409(api, case, alice):
    resolve_case(case, alice)
    before = row_counts()

    response = post_json(api, case_path(case, "/cancel"), {"reason": "x"})

    assert_error(response, 409, "illegal_transition")
    assert row_counts() == before
    assert Escalation.objects.get(pk=case.pk).status == Status.RESOLVED


def test_cancel_refuses_an_unknown_field(api, case):
    response = post_json(api, case_path(case, "/cancel"), {"why": "typo"})

    error = assert_error(response, 400, "invalid")
    assert "why" in error["fields"]
    assert Escalation.objects.get(pk=case.pk).status == Status.OPEN


def test_cancelling_another_agents_case_is_a_404(other_api, case):
    before = row_counts()

    response = post_json(other_api, case_path(case, "/cancel"), {"reason": "not mine"})

    assert_error(response, 404, "not_found")
    assert row_counts() == before
    assert Escalation.objects.get(pk=case.pk).status == Status.OPEN


def test_cancelling_no_such_case_is_a_404(api):
    response = post_json(api, case_path(uuid.uuid4(), "/cancel"), {})

    assert_error(response, 404, "not_found")


def test_one_agent_cannot_cancel_or_add_to_the_other_agents_cases(api, other_api, other_agent):
    theirs = make_case(agent=other_agent, queue=Queue.objects.get(slug="refunds"))
    before = row_counts()

    context = post_json(api, case_path(theirs, "/context"), {"note": "x"})
    cancel = post_json(api, case_path(theirs, "/cancel"), {})

    assert_error(context, 404, "not_found")
    assert_error(cancel, 404, "not_found")
    assert row_counts() == before
