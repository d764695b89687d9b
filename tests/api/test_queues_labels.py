"""GET /api/v1/queues (the agent's queues with SLA targets and label schema) and
GET /api/v1/labels (this agent's resolved cases as training labels, oldest first)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient
from django.utils import timezone

from escalation import transitions
from escalation.audit import Actor
from escalation.models import AgentKey
from tests.api.helpers import API, assert_error, bearer, client_for, resolve_case
from tests.factories import make_case

pytestmark = pytest.mark.django_db

QUEUES = f"{API}/queues"
LABELS = f"{API}/labels"
SCHEMA = {
    "type": "object",
    "properties": {
        "outcome": {"type": "string", "enum": ["fraud", "goodwill", "policy"]},
        "amount_ok": {"type": "boolean"},
    },
    "required": ["outcome"],
}


# --- queues ----------------------------------------------------------------------------------


def test_queues_lists_only_the_queues_the_agent_may_post_to(agent, refunds, support, compliance):
    agent.all_queues = False
    agent.save()
    agent.queues.set([support, refunds])

    response = client_for(agent).get(QUEUES)

    assert response.status_code == 200
    assert [q["slug"] for q in response.json()] == ["refunds", "support"]


def test_queues_lists_every_active_queue_for_an_agent_with_all_queues(api, support):
    support.is_active = False
    support.save()

    response = api.get(QUEUES)

    assert [q["slug"] for q in response.json()] == ["compliance", "refunds"]


def test_each_queue_carries_its_sla_targets_and_label_schema(api, refunds):
    refunds.label_schema = SCHEMA
    refunds.sla_policy = {
        **refunds.sla_policy,
        "urgent": {"claim": 120, "resolve": 900},
    }
    refunds.save()

    response = api.get(QUEUES)

    queue = next(q for q in response.json() if q["slug"] == "refunds")
    assert queue["name"] == "Refunds"
    assert queue["label_schema"] == SCHEMA
    assert queue["sla"] == {
        "urgent": {"claim_seconds": 120, "resolve_seconds": 900},
        "high": {"claim_seconds": 15 * 60, "resolve_seconds": 2 * 3600},
        "normal": {"claim_seconds": 3600, "resolve_seconds": 8 * 3600},
        "low": {"claim_seconds": 4 * 3600, "resolve_seconds": 24 * 3600},
    }


def test_an_agent_with_no_queues_sees_none(agent, refunds):
    agent.all_queues = False
    agent.save()

    response = client_for(agent).get(QUEUES)

    assert response.status_code == 200
    assert response.json() == []


# --- labels ----------------------------------------------------------------------------------


@pytest.fixture
def resolved_cases(agent, refunds, support, alice):
    """Three resolved cases of refund-bot, resolved in the order 0, 1, 2 (not their creation
    order), plus an open one, a cancelled one and another agent's resolved one."""
    now = timezone.now()
    created = [
        make_case(agent=agent, queue=queue, now=now - timedelta(hours=5 - i), external_id=f"t-{i}")
        for i, queue in enumerate([refunds, support, refunds])
    ]
    order = [created[2], created[0], created[1]]
    for i, case in enumerate(order):
        resolve_case(case, alice, at=now - timedelta(minutes=30 - 10 * i), note=f"n{i}")
    make_case(agent=agent, queue=refunds)
    cancelled = make_case(agent=agent, queue=refunds)
    transitions.cancel(actor=Actor.for_agent(agent), case_id=cancelled.pk)
    return order, now


@pytest.fixture
def others_resolved(other_agent, refunds, alice):
    case = make_case(agent=other_agent, queue=refunds)
    resolve_case(case, alice)
    return case


def label_ids(response) -> list[str]:
    return [label["id"] for label in response.json()["results"]]


def test_labels_are_this_agents_resolved_cases_oldest_resolution_first(
    api, resolved_cases, others_resolved
):
    order, _ = resolved_cases

    response = api.get(LABELS)

    assert response.status_code == 200
    assert label_ids(response) == [str(c.pk) for c in order]


def test_a_label_carries_input_agent_output_and_the_human_decision(api, agent, refunds, alice):
    refunds.label_schema = SCHEMA
    refunds.save()
    case = make_case(
        agent=agent,
        queue=refunds,
        metadata={"tier": "gold"},
        reason="policy",
        agent_version="v7",
    )
    resolve_case(
        case,
        alice,
        decision="modify",
        final_action={"type": "refund", "amount": 100},
        labels={"outcome": "goodwill", "amount_ok": False},
        note="goodwill only",
    )

    label = api.get(LABELS).json()["results"][0]

    assert label["id"] == str(case.pk)
    assert label["queue"] == "refunds"
    assert label["input"] == {
        "summary": case.summary,
        "reason": "policy",
        "context": case.context,
        "metadata": {"tier": "gold"},
    }
    assert label["agent"] == {
        "proposed_action": case.proposed_action,
        "confidence": 0.42,
        "agent_version": "v7",
    }
    assert label["decision"] == "modify"
    assert label["final_action"] == {"type": "refund", "amount": 100}
    assert label["labels"] == {"outcome": "goodwill", "amount_ok": False}
    assert label["note"] == "goodwill only"
    assert label["reviewer"] == "alice"
    assert label["resolved_at"]


def test_labels_filter_by_queue(api, resolved_cases):
    order, _ = resolved_cases

    response = api.get(LABELS, {"queue": "support"})

    assert label_ids(response) == [str(order[2].pk)]


def test_labels_filter_by_resolved_after(api, resolved_cases):
    order, now = resolved_cases

    response = api.get(LABELS, {"after": (now - timedelta(minutes=25)).isoformat()})

    assert response.status_code == 200
    assert label_ids(response) == [str(order[1].pk), str(order[2].pk)]


@pytest.mark.parametrize("value", ["last week", "2026-02-30T00:00:00Z", "2026-01-31T12:00:00"])
def test_labels_refuse_a_bad_after(api, value):
    response = api.get(LABELS, {"after": value})

    error = assert_error(response, 400, "invalid")
    assert "after" in error["fields"]


def test_labels_page_with_a_cursor_without_duplicates_or_gaps(api, resolved_cases):
    order, _ = resolved_cases

    first = api.get(LABELS, {"limit": 2})
    assert first.status_code == 200, first.content
    next_url = first.json()["next"]
    assert next_url
    second = api.get(next_url)

    assert second.status_code == 200, second.content
    assert label_ids(first) + label_ids(second) == [str(c.pk) for c in order]
    assert second.json()["next"] is None


def read_jsonl(response) -> list[dict]:
    text = b"".join(response.streaming_content).decode()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_labels_stream_as_json_lines_in_resolution_order(api, resolved_cases, others_resolved):
    order, _ = resolved_cases

    response = api.get(LABELS, {"format": "jsonl"})

    assert response.status_code == 200, getattr(response, "content", b"")[:300]
    assert response["Content-Type"].startswith("application/x-ndjson")
    lines = read_jsonl(response)
    assert [line["id"] for line in lines] == [str(c.pk) for c in order]
    assert all(line["decision"] == "approve" for line in lines)


def test_json_lines_honour_the_queue_and_after_filters(api, resolved_cases):
    order, now = resolved_cases

    response = api.get(
        LABELS,
        {"format": "jsonl", "queue": "refunds", "after": (now - timedelta(hours=1)).isoformat()},
    )

    assert response.status_code == 200, getattr(response, "content", b"")[:300]
    assert [line["id"] for line in read_jsonl(response)] == [str(order[0].pk), str(order[1].pk)]


def test_json_lines_of_an_agent_with_no_labels_are_empty(other_api, resolved_cases):
    response = other_api.get(LABELS, {"format": "jsonl"})

    assert response.status_code == 200, getattr(response, "content", b"")[:300]
    assert b"".join(response.streaming_content) == b""


@pytest.mark.parametrize("fmt", ["tsv", "xml", "JSONL"])
def test_labels_refuse_an_unknown_format(api, fmt):
    response = api.get(LABELS, {"format": fmt})

    error = assert_error(response, 400, "invalid")
    assert "format" in error["fields"]


def test_labels_in_json_format_are_the_paginated_page(api, resolved_cases):
    order, _ = resolved_cases

    response = api.get(LABELS, {"format": "json"})

    assert response.status_code == 200, response.content[:300]
    assert label_ids(response) == [str(c.pk) for c in order]


def test_one_agent_never_sees_the_other_agents_labels(other_api, resolved_cases):
    response = other_api.get(LABELS)

    assert response.status_code == 200
    assert response.json()["results"] == []


def test_labels_stream_as_json_lines_under_asgi_too(agent, resolved_cases):
    # Production serves ASGI, where the stream is an async iterator.
    order, _ = resolved_cases
    _, raw = AgentKey.generate(agent)

    async def fetch() -> tuple[int, str, bytes]:
        # Per-request headers: AsyncClient's constructor headers never reach the ASGI scope.
        response = await AsyncClient().get(LABELS, {"format": "jsonl"}, headers=bearer(raw))
        if not response.streaming:
            return response.status_code, response["Content-Type"], response.content
        chunks = [chunk async for chunk in response.streaming_content]
        return response.status_code, response["Content-Type"], b"".join(chunks)

    status, content_type, body = async_to_sync(fetch)()

    assert status == 200, body[:300]
    assert content_type.startswith("application/x-ndjson")
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert [line["id"] for line in lines] == [str(c.pk) for c in order]
