"""The inventory of every route the project serves, classified by who may reach it, and how
to call each one in a test (tests/security/test_access_inventory.py checks it is complete)."""

from __future__ import annotations

from django.test import Client

from escalation.models import AuditEvent, Delivery, DeliveryStatus, Escalation, Status
from tests.api.helpers import API, ESCALATIONS, create_body, post_json

PUBLIC = {
    "",  # redirects to the inbox
    "favicon.ico",
    "healthz",
    "readyz",
    "metrics",  # HANDOFF_METRICS_TOKEN guards it where set (tests/test_health.py)
    "login",
    "password_reset",
    "password_reset_done",
    "password_reset_confirm",
    "password_reset_complete",
    "api-schema",
    "api-docs",
}
SIGNED_IN = {  # any signed-in person; what they see is limited by their queues
    "inbox": "GET",
    "next-case": "POST",
    "logout": "POST",
    "password_change": "GET",
    "password_change_done": "GET",
}
CASE_PAGES = {  # /cases/<id>/...: 404 outside the person's queues
    "case": "GET",
    "case-updates": "GET",
    "case-claim": "POST",
    "case-release": "POST",
    "case-heartbeat": "POST",
    "case-decide": "POST",
    "case-verdict": "POST",
    "case-transfer": "POST",
}
MANAGER_PAGES = {
    "manage-audit": "GET",
    "manage-audit-export": "GET",
    "manage-audit-verify": "POST",
    "manage-sla": "GET",
    "manage-reviewers": "GET",
    "manage-agents": "GET",
    "manage-deliveries": "GET",
    "manage-exports": "GET",
    "manage-export-labels": "GET",
}
MANAGER_OBJECT_PAGES = {  # about one ops object: 404 to a manager of another team
    "manage-audit-case": "GET",
    "manage-agent-calibration": "GET",
    "manage-redeliver": "POST",
    "manage-scope": "GET",
    "manage-scope-promote": "POST",
    "manage-scope-mode": "POST",
}
API_CASE = {  # name an ops case: 404 to another agent
    "api-escalation": "GET",
    "api-escalation-context": "POST",
    "api-escalation-cancel": "POST",
    "api-escalation-resolution": "GET",
}
API_COLLECTIONS = {
    "api-escalations": "GET",
    "api-escalations-batch": "POST",
    "api-decisions": "POST",
    "api-queues": "GET",
    "api-labels": "GET",
    "api-calibration": "GET",
}
WEB = SIGNED_IN | CASE_PAGES | MANAGER_PAGES | MANAGER_OBJECT_PAGES
API_ROUTES = API_CASE | API_COLLECTIONS


def web_path(name: str, objects: dict) -> str:
    case, delivery = objects["case"], objects["delivery"]
    scope = objects.get("scope")
    scope_path = f"/manage/agents/{objects['agent'].name}/scopes/{scope.pk if scope else 0}/"
    return {
        "inbox": "/inbox/",
        "next-case": "/inbox/next/",
        "logout": "/accounts/logout/",
        "password_change": "/accounts/password_change/",
        "password_change_done": "/accounts/password_change/done/",
        **{name: f"/cases/{case.pk}/{tail}" for name, tail in _CASE_TAILS.items()},
        "manage-audit": "/manage/audit/",
        "manage-audit-export": "/manage/audit/export.csv",
        "manage-audit-verify": "/manage/audit/verify/",
        "manage-audit-case": f"/manage/audit/cases/{case.pk}/",
        "manage-sla": "/manage/sla/",
        "manage-reviewers": "/manage/reviewers/",
        "manage-agents": "/manage/agents/",
        "manage-agent-calibration": f"/manage/agents/{objects['agent'].name}/calibration",
        "manage-deliveries": "/manage/deliveries/",
        "manage-redeliver": f"/manage/deliveries/{delivery.pk}/redeliver/",
        "manage-scope": scope_path,
        "manage-scope-promote": scope_path + "promote",
        "manage-scope-mode": scope_path + "mode",
        "manage-exports": "/manage/exports/",
        "manage-export-labels": "/manage/exports/labels.csv",
    }[name]


_CASE_TAILS = {
    "case": "",
    "case-updates": "updates/",
    "case-claim": "claim/",
    "case-release": "release/",
    "case-heartbeat": "heartbeat/",
    "case-decide": "decide/",
    "case-verdict": "verdict/",
    "case-transfer": "transfer/",
}


def request(client: Client, method: str, path: str, objects: dict):
    case = objects["case"]
    data = {"decision": "approve", "queue": "compliance", "claim_token": str(case.claim_token)}
    return client.post(path, data) if method == "POST" else client.get(path)


def unchanged(objects: dict, events_before: int) -> bool:
    case = Escalation.objects.get(pk=objects["case"].pk)
    delivery = Delivery.objects.get(pk=objects["delivery"].pk)
    return (
        case.status == Status.CLAIMED
        and case.queue.slug == "refunds"
        and delivery.status == DeliveryStatus.DEAD
        and AuditEvent.objects.count() == events_before
    )


def api_path(name: str, case_id) -> str:
    return {
        "api-escalation": f"{ESCALATIONS}/{case_id}",
        "api-escalation-context": f"{ESCALATIONS}/{case_id}/context",
        "api-escalation-cancel": f"{ESCALATIONS}/{case_id}/cancel",
        "api-escalation-resolution": f"{ESCALATIONS}/{case_id}/resolution",
        "api-escalations": ESCALATIONS,
        "api-escalations-batch": f"{ESCALATIONS}/batch",
        "api-decisions": f"{API}/decisions",
        "api-queues": f"{API}/queues",
        "api-labels": f"{API}/labels",
        "api-calibration": f"{API}/calibration",
    }[name]


API_BODIES = {
    "api-escalation-context": {"note": "not mine"},
    "api-escalation-cancel": {"reason": "not mine"},
    "api-escalations-batch": {"items": [{"idempotency_key": "k1", **create_body()}]},
    "api-decisions": {**create_body(), "agent_version": "v1"},
}


def api_request(client: Client, name: str, case_id):
    path = api_path(name, case_id)
    if API_ROUTES[name] == "POST":
        return post_json(client, path, API_BODIES[name])
    return client.get(path)
