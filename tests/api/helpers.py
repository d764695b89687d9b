"""Shared pieces of the API tests: a bearer client, a valid create body, JSON posting, the
error envelope, and a count of every row a request could write."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from django.test import Client

from escalation import transitions
from escalation.audit import Actor
from escalation.models import (
    AgentKey,
    AuditEvent,
    ContextUpdate,
    Escalation,
    IdempotencyRecord,
    OutboxItem,
)

API = "/api/v1"
ESCALATIONS = f"{API}/escalations"
DROP = object()  # a create_body() override that removes the field

# The case resource as the spec lists it.
CASE_FIELDS = {
    "id",
    "status",
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
    "created_at",
    "updated_at",
    "claim_due_at",
    "resolve_due_at",
    "claim_breached_at",
    "resolve_breached_at",
    "expires_at",
    "resolution",
    "url",
}


def bearer(raw_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw_key}"}


def client_for(agent, **kwargs) -> Client:
    """A test client carrying a fresh API key of `agent`."""
    _, raw = AgentKey.generate(agent)
    return Client(headers=bearer(raw), **kwargs)


def create_body(**overrides) -> dict:
    body = {
        "queue": "refunds",
        "summary": "Refund of 1,240 EUR exceeds the auto-approve limit",
        "confidence": 0.42,
        "context": {"conversation": [{"role": "customer", "text": "Where is my refund?"}]},
    }
    body.update(overrides)
    return {name: value for name, value in body.items() if value is not DROP}


def post_json(client: Client, path: str, body=None, **headers):
    """POST a JSON value, or a str/bytes sent as the raw body (for malformed JSON)."""
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json", headers=headers)


def case_path(case_or_id, tail: str = "") -> str:
    case_id = getattr(case_or_id, "pk", case_or_id)
    return f"{ESCALATIONS}/{case_id}{tail}"


def assert_error(response, status: int, code: str) -> dict:
    """The spec's JSON error envelope with this status and code; returns the error object."""
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    error = response.json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    return error


def row_counts() -> dict[str, int]:
    """Every table an API request could write to."""
    return {
        "cases": Escalation.objects.count(),
        "audit": AuditEvent.objects.count(),
        "outbox": OutboxItem.objects.count(),
        "context": ContextUpdate.objects.count(),
        "idempotency": IdempotencyRecord.objects.count(),
    }


def verbs(case) -> list[str]:
    return list(AuditEvent.objects.filter(escalation=case).values_list("verb", flat=True))


def resolve_case(case, reviewer, *, at: datetime | None = None, decision: str = "approve", **kw):
    """Claim and resolve `case` as `reviewer` (resolved at `at` when given)."""
    actor = Actor.for_user(reviewer)
    claim_at = at - timedelta(minutes=1) if at else None
    claimed = transitions.claim(actor=actor, case_id=case.pk, now=claim_at)
    return transitions.resolve(
        actor=actor,
        case_id=case.pk,
        claim_token=claimed.claim_token,
        decision=decision,
        now=at,
        **kw,
    )
