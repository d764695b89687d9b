"""POST /api/v1/escalations: the case resource on success; a 400 naming each bad field, a 403
for a queue the agent may not use, and a 429 past the cap or the rate, with nothing written."""

from __future__ import annotations

import contextlib
import json
import threading
from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from escalation import transitions
from escalation.audit import Actor
from escalation.models import AgentKey, AuditEvent, Escalation, OutboxItem, Status
from tests.api.helpers import (
    CASE_FIELDS,
    DROP,
    ESCALATIONS,
    assert_error,
    bearer,
    client_for,
    create_body,
    post_json,
    row_counts,
    verbs,
)
from tests.factories import make_case

pytestmark = pytest.mark.django_db

FULL_BODY = {
    "queue": "refunds",
    "summary": "Refund of 1,240 EUR exceeds the auto-approve limit",
    "confidence": 0.42,
    "priority": "high",
    "reason": "low_confidence",
    "context": {"conversation": [{"role": "customer", "text": "..."}], "order": {"id": "A-77"}},
    "proposed_action": {"type": "refund", "amount": 1240, "currency": "EUR"},
    "external_id": "ticket-8812",
    "metadata": {"account_value": 125000, "tier": "gold"},
    "callback_url": "https://agent.example.com/hooks/handoff",
    "agent_version": "refund-bot 2.3.1",
}


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- success ---------------------------------------------------------------------------------


def test_create_answers_201_with_the_full_case_resource(api):
    response = post_json(api, ESCALATIONS, FULL_BODY)

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) >= CASE_FIELDS
    case = Escalation.objects.get()
    assert body["id"] == str(case.pk)
    assert body["status"] == "open"
    for field in (
        "queue",
        "priority",
        "confidence",
        "summary",
        "reason",
        "context",
        "proposed_action",
        "external_id",
        "metadata",
        "agent_version",
    ):
        assert body[field] == FULL_BODY[field], field
    created = _time(body["created_at"])
    assert _time(body["updated_at"]) == created
    assert _time(body["claim_due_at"]) - created == timedelta(minutes=15)  # high: 15 min
    assert _time(body["resolve_due_at"]) - created == timedelta(hours=2)
    assert _time(body["expires_at"]) - created == timedelta(days=7)
    assert body["claim_breached_at"] is None
    assert body["resolve_breached_at"] is None
    assert body["resolution"] is None
    assert body["url"] == f"{settings.HANDOFF_PUBLIC_URL.rstrip('/')}/api/v1/escalations/{case.pk}"


def test_create_stores_the_case_with_an_audit_event_and_a_routing_job(api, agent, refunds):
    response = post_json(api, ESCALATIONS, FULL_BODY)

    assert response.status_code == 201
    case = Escalation.objects.get(pk=response.json()["id"])
    assert case.agent == agent
    assert case.queue == refunds
    assert case.status == Status.OPEN
    assert case.context == FULL_BODY["context"]
    assert case.metadata == FULL_BODY["metadata"]
    assert case.callback_url == FULL_BODY["callback_url"]
    assert case.agent_version == "refund-bot 2.3.1"
    assert verbs(case) == ["escalation.created"]
    event = AuditEvent.objects.get(escalation=case)
    assert event.actor_kind == "agent"
    assert event.actor_name == "refund-bot"
    assert list(OutboxItem.objects.filter(escalation=case).values_list("kind", flat=True)) == [
        "route"
    ]


def test_create_fills_the_optional_fields_with_their_defaults(api):
    response = post_json(api, ESCALATIONS, create_body())

    assert response.status_code == 201
    body = response.json()
    assert body["priority"] == "normal"
    assert body["reason"] == ""
    assert body["proposed_action"] is None
    assert body["external_id"] == ""
    assert body["metadata"] == {}
    assert body["agent_version"] == ""
    created = _time(body["created_at"])
    assert _time(body["claim_due_at"]) - created == timedelta(hours=1)  # normal: 1 h / 8 h
    assert _time(body["resolve_due_at"]) - created == timedelta(hours=8)
    assert Escalation.objects.get().priority == "normal"


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"summary": "x"}, id="one-char-summary"),
        pytest.param({"summary": "x" * 200}, id="200-char-summary"),
        pytest.param({"confidence": 0}, id="confidence-0"),
        pytest.param({"confidence": 1}, id="confidence-1"),
        pytest.param({"confidence": 1.0}, id="confidence-1.0"),
        pytest.param({"context": {}}, id="empty-context"),
        pytest.param({"proposed_action": None}, id="null-proposed-action"),
        pytest.param({"priority": "urgent"}, id="urgent"),
        pytest.param({"priority": "low"}, id="low"),
        pytest.param({"callback_url": "https://agent.example.com/hook"}, id="https-callback"),
        pytest.param({"agent_version": "v" * 100}, id="100-char-agent-version"),
    ],
)
def test_create_accepts_values_at_the_edges_of_what_is_allowed(api, overrides):
    response = post_json(api, ESCALATIONS, create_body(**overrides))

    assert response.status_code == 201, response.content
    assert Escalation.objects.count() == 1


def test_create_accepts_the_spec_example_body_for_a_restricted_agent(agent, refunds, support):
    agent.all_queues = False
    agent.save()
    agent.queues.set([refunds])

    response = post_json(client_for(agent), ESCALATIONS, FULL_BODY)

    assert response.status_code == 201
    assert Escalation.objects.get().queue == refunds


# --- 400: invalid bodies -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, field",
    [
        pytest.param({"queue": DROP}, "queue", id="queue-missing"),
        pytest.param({"summary": DROP}, "summary", id="summary-missing"),
        pytest.param({"confidence": DROP}, "confidence", id="confidence-missing"),
        pytest.param({"context": DROP}, "context", id="context-missing"),
        pytest.param({"summary": ""}, "summary", id="summary-empty"),
        pytest.param({"summary": "x" * 201}, "summary", id="summary-201-chars"),
        pytest.param({"summary": 42}, "summary", id="summary-a-number"),
        pytest.param({"confidence": -0.1}, "confidence", id="confidence-below-0"),
        pytest.param({"confidence": 1.1}, "confidence", id="confidence-above-1"),
        pytest.param({"confidence": "0.5"}, "confidence", id="confidence-a-string"),
        pytest.param({"confidence": True}, "confidence", id="confidence-true"),
        pytest.param({"confidence": None}, "confidence", id="confidence-null"),
        pytest.param({"priority": "bogus"}, "priority", id="priority-bogus"),
        pytest.param({"reason": "Not A Slug!"}, "reason", id="reason-not-a-slug"),
        pytest.param({"context": []}, "context", id="context-a-list"),
        pytest.param({"context": "text"}, "context", id="context-a-string"),
        pytest.param({"context": None}, "context", id="context-null"),
        pytest.param({"proposed_action": []}, "proposed_action", id="proposed-action-a-list"),
        pytest.param({"proposed_action": "refund"}, "proposed_action", id="proposed-action-str"),
        pytest.param({"metadata": "gold"}, "metadata", id="metadata-a-string"),
        pytest.param({"metadata": [1]}, "metadata", id="metadata-a-list"),
        pytest.param({"external_id": "x" * 256}, "external_id", id="external-id-256-chars"),
        pytest.param(
            {"callback_url": "ftp://agent.example.com/hook"}, "callback_url", id="callback-ftp"
        ),
        pytest.param(
            {"callback_url": "javascript:alert(1)"}, "callback_url", id="callback-javascript"
        ),
        pytest.param({"callback_url": "not a url"}, "callback_url", id="callback-not-a-url"),
        pytest.param({"agent_version": "v" * 101}, "agent_version", id="agent-version-101-chars"),
        pytest.param({"agent_version": 2}, "agent_version", id="agent-version-a-number"),
        pytest.param({"priorty": "high"}, "priorty", id="unknown-field-typo"),
        pytest.param({"status": "resolved"}, "status", id="unknown-field-status"),
    ],
)
def test_create_refuses_an_invalid_body_naming_the_field(api, overrides, field):
    before = row_counts()

    response = post_json(api, ESCALATIONS, create_body(**overrides))

    error = assert_error(response, 400, "invalid")
    assert field in error["fields"], error
    assert row_counts() == before


def test_create_names_every_missing_required_field(api):
    before = row_counts()

    response = post_json(api, ESCALATIONS, {})

    error = assert_error(response, 400, "invalid")
    assert {"queue", "summary", "confidence", "context"} <= set(error["fields"])
    assert row_counts() == before


def test_create_names_every_unknown_field(api):
    response = post_json(api, ESCALATIONS, create_body(priorty="high", contxt={}))

    error = assert_error(response, 400, "invalid")
    assert {"priorty", "contxt"} <= set(error["fields"])
    assert not Escalation.objects.exists()


@pytest.mark.parametrize("body", [[create_body()], "a string", 42, None])
def test_create_refuses_a_body_that_is_not_a_json_object(api, body):
    before = row_counts()

    response = post_json(api, ESCALATIONS, json.dumps(body))

    assert_error(response, 400, "invalid")
    assert row_counts() == before


# --- 403: queues -----------------------------------------------------------------------------


def test_create_refuses_a_queue_the_agent_may_not_post_to(agent, refunds, support):
    agent.all_queues = False
    agent.save()
    agent.queues.set([support])
    before = row_counts()

    response = post_json(client_for(agent), ESCALATIONS, create_body(queue="refunds"))

    error = assert_error(response, 403, "queue_not_allowed")
    assert "queue" in error["fields"]
    assert row_counts() == before


def test_create_refuses_an_unknown_queue(api):
    before = row_counts()

    response = post_json(api, ESCALATIONS, create_body(queue="no-such-queue"))

    assert_error(response, 403, "queue_not_allowed")
    assert row_counts() == before


def test_create_refuses_an_inactive_queue(api, refunds):
    refunds.is_active = False
    refunds.save()
    before = row_counts()

    response = post_json(api, ESCALATIONS, create_body(queue="refunds"))

    assert_error(response, 403, "queue_not_allowed")
    assert row_counts() == before


# --- 429: open-case cap and rate limit -------------------------------------------------------


def test_create_refuses_a_case_past_the_agents_open_case_cap(agent, refunds):
    agent.max_open_cases = 1
    agent.save()
    make_case(agent=agent, queue=refunds)
    before = row_counts()

    response = post_json(client_for(agent), ESCALATIONS, create_body())

    assert_error(response, 429, "open_case_cap")
    assert row_counts() == before


def test_the_open_case_cap_counts_only_open_and_claimed_cases(agent, refunds):
    agent.max_open_cases = 1
    agent.save()
    old = make_case(agent=agent, queue=refunds)
    transitions.cancel(actor=Actor.for_agent(agent), case_id=old.pk)

    response = post_json(client_for(agent), ESCALATIONS, create_body())

    assert response.status_code == 201


def test_create_is_rate_limited_per_agent_with_retry_after(slow_agent, agent):
    client = client_for(slow_agent)
    first = post_json(client, ESCALATIONS, create_body())
    second = post_json(client, ESCALATIONS, create_body())
    before = row_counts()

    third = post_json(client, ESCALATIONS, create_body())

    assert (first.status_code, second.status_code) == (201, 201)
    assert_error(third, 429, "rate_limited")
    assert int(third["Retry-After"]) >= 1
    assert row_counts() == before
    # The bucket is this agent's alone.
    assert post_json(client_for(agent), ESCALATIONS, create_body()).status_code == 201


def test_the_rate_limit_covers_reads_too(slow_agent):
    client = client_for(slow_agent)
    assert client.get(ESCALATIONS).status_code == 200
    assert client.get(ESCALATIONS).status_code == 200

    response = client.get(ESCALATIONS)

    assert_error(response, 429, "rate_limited")
    assert int(response["Retry-After"]) >= 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_never_take_an_agent_past_its_open_case_cap(monkeypatch, agent, refunds):
    agent.max_open_cases = 1
    agent.save()
    _, raw = AgentKey.generate(agent)
    # Hold both creates just after their cap check until both have made it (or 2 s pass): an
    # unguarded count lets both through; a cap decided in the database makes the second wait
    # for the first and then refuse.
    both_checked = threading.Barrier(2)
    enter_queue = transitions._enter_queue

    def enter_queue_together(*args, **kwargs):
        with contextlib.suppress(threading.BrokenBarrierError):
            both_checked.wait(timeout=2)
        return enter_queue(*args, **kwargs)

    monkeypatch.setattr(transitions, "_enter_queue", enter_queue_together)
    statuses: list = [None, None]

    def post(index: int) -> None:
        try:
            client = Client(headers=bearer(raw))
            statuses[index] = post_json(client, ESCALATIONS, create_body()).status_code
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            statuses[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(statuses, key=str) == [201, 429], statuses
    assert Escalation.objects.filter(agent=agent, status=Status.OPEN).count() == 1


def test_an_unknown_field_is_named_alongside_other_errors(api):
    response = post_json(api, ESCALATIONS, {**create_body(), "typo": 1, "confidence": 7})

    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert fields["typo"] == "unknown field"
    assert "confidence" in fields
