"""GET /api/v1/escalations and /api/v1/escalations/{id}: an agent reads its own cases only,
filtered and cursor-paginated, each with its resolution once resolved."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.api.helpers import (
    CASE_FIELDS,
    ESCALATIONS,
    assert_error,
    case_path,
    resolve_case,
)
from tests.factories import make_case

pytestmark = pytest.mark.django_db


def ids(response) -> list[str]:
    return [case["id"] for case in response.json()["results"]]


# --- list ------------------------------------------------------------------------------------


def test_list_shows_only_this_agents_cases_newest_first(api, agent, other_agent, refunds):
    now = timezone.now()
    older = make_case(agent=agent, queue=refunds, now=now - timedelta(minutes=2))
    newer = make_case(agent=agent, queue=refunds, now=now - timedelta(minutes=1))
    make_case(agent=other_agent, queue=refunds)

    response = api.get(ESCALATIONS)

    assert response.status_code == 200
    assert ids(response) == [str(newer.pk), str(older.pk)]
    assert set(response.json()["results"][0]) >= CASE_FIELDS


def test_list_is_empty_for_an_agent_with_no_cases(other_api, agent, refunds):
    make_case(agent=agent, queue=refunds)

    response = other_api.get(ESCALATIONS)

    assert response.status_code == 200
    assert response.json()["results"] == []


def test_list_filters_by_status(api, agent, refunds, alice):
    open_case = make_case(agent=agent, queue=refunds)
    resolved = make_case(agent=agent, queue=refunds)
    resolve_case(resolved, alice)

    open_only = api.get(ESCALATIONS, {"status": "open"})
    resolved_only = api.get(ESCALATIONS, {"status": "resolved"})
    cancelled_only = api.get(ESCALATIONS, {"status": "cancelled"})

    assert ids(open_only) == [str(open_case.pk)]
    assert ids(resolved_only) == [str(resolved.pk)]
    assert ids(cancelled_only) == []


def test_list_refuses_an_unknown_status(api):
    response = api.get(ESCALATIONS, {"status": "done"})

    error = assert_error(response, 400, "invalid")
    assert "status" in error["fields"]


def test_list_filters_by_queue(api, agent, refunds, support):
    in_refunds = make_case(agent=agent, queue=refunds)
    in_support = make_case(agent=agent, queue=support)

    assert ids(api.get(ESCALATIONS, {"queue": "refunds"})) == [str(in_refunds.pk)]
    assert ids(api.get(ESCALATIONS, {"queue": "support"})) == [str(in_support.pk)]
    assert ids(api.get(ESCALATIONS, {"queue": "compliance"})) == []


def test_list_filters_by_external_id(api, agent, other_agent, refunds):
    mine = make_case(agent=agent, queue=refunds, external_id="ticket-1")
    make_case(agent=agent, queue=refunds, external_id="ticket-2")
    make_case(agent=other_agent, queue=refunds, external_id="ticket-1")

    response = api.get(ESCALATIONS, {"external_id": "ticket-1"})

    assert ids(response) == [str(mine.pk)]


def test_list_filters_by_updated_after(api, agent, refunds):
    now = timezone.now()
    make_case(agent=agent, queue=refunds, now=now - timedelta(hours=2))
    recent = make_case(agent=agent, queue=refunds, now=now - timedelta(minutes=5))

    response = api.get(ESCALATIONS, {"updated_after": (now - timedelta(hours=1)).isoformat()})
    with_z = api.get(
        ESCALATIONS,
        {"updated_after": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")},
    )

    assert response.status_code == 200
    assert ids(response) == [str(recent.pk)]
    assert ids(with_z) == [str(recent.pk)]


def test_updated_after_sees_a_case_changed_after_it_was_created(api, agent, refunds, alice):
    now = timezone.now()
    case = make_case(agent=agent, queue=refunds, now=now - timedelta(hours=2))
    resolve_case(case, alice, at=now - timedelta(minutes=1))

    response = api.get(ESCALATIONS, {"updated_after": (now - timedelta(hours=1)).isoformat()})

    assert ids(response) == [str(case.pk)]


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01T00:00:00Z", "2026-01-31T12:00:00", ""])
def test_list_refuses_a_bad_updated_after(api, value):
    response = api.get(ESCALATIONS, {"updated_after": value})

    error = assert_error(response, 400, "invalid")
    assert "updated_after" in error["fields"]


def test_list_pages_with_a_cursor_without_duplicates_or_gaps(api, agent, refunds):
    now = timezone.now()
    cases = [
        make_case(agent=agent, queue=refunds, now=now - timedelta(minutes=10 - i)) for i in range(5)
    ]
    newest_first = [str(c.pk) for c in reversed(cases)]

    seen: list[str] = []
    response = api.get(ESCALATIONS, {"limit": 2})
    pages = 0
    while True:
        assert response.status_code == 200
        page = ids(response)
        assert len(page) <= 2
        seen += page
        pages += 1
        next_url = response.json()["next"]
        if not next_url:
            break
        response = api.get(next_url)

    assert pages == 3
    assert seen == newest_first


# --- get one ---------------------------------------------------------------------------------


def test_get_answers_the_case_with_a_null_resolution_while_open(api, case):
    response = api.get(case_path(case))

    assert response.status_code == 200
    body = response.json()
    assert set(body) >= CASE_FIELDS
    assert body["id"] == str(case.pk)
    assert body["status"] == "open"
    assert body["resolution"] is None


def test_get_answers_the_resolution_once_resolved(api, case, alice):
    resolve_case(
        case,
        alice,
        decision="modify",
        final_action={"type": "refund", "amount": 600, "currency": "EUR"},
        note="half now, half after the return arrives",
    )

    response = api.get(case_path(case))

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "resolved"
    resolution = body["resolution"]
    assert set(resolution) == {
        "decision",
        "final_action",
        "labels",
        "note",
        "resolved_by",
        "resolved_at",
    }
    assert resolution["decision"] == "modify"
    assert resolution["final_action"] == {"type": "refund", "amount": 600, "currency": "EUR"}
    assert resolution["labels"] == {}
    assert resolution["note"] == "half now, half after the return arrives"
    assert resolution["resolved_by"] == "alice"
    assert resolution["resolved_at"]


def test_an_approved_resolution_carries_the_proposed_action_as_final(api, case, alice):
    resolve_case(case, alice, decision="approve")

    resolution = api.get(case_path(case)).json()["resolution"]

    assert resolution["decision"] == "approve"
    assert resolution["final_action"] == case.proposed_action


def test_get_hides_another_agents_case(other_api, case):
    response = other_api.get(case_path(case))

    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("case_id", ["not-a-uuid", "123", "0f6c1b6e-1d2a-4f3b-9c8d-7e6f5a4b3c2d"])
def test_get_answers_404_for_no_such_case(api, case_id):
    response = api.get(case_path(case_id))

    assert_error(response, 404, "not_found")
