"""Demo data for `seed_demo`: two queues of team ops, the demo people, and a dozen realistic
open cases, so the inbox has work on first look. Plain data; the command writes it."""

from __future__ import annotations

from typing import Any

TEAM = "ops"
AGENT = "demo-agent"

# Fixed demo logins (printed by seed_demo). Demo only: never seed a production database.
USERS: list[dict[str, Any]] = [
    {"username": "reviewer", "password": "handoff-reviewer", "role": "reviewer", "team": TEAM},
    {"username": "reviewer2", "password": "handoff-reviewer2", "role": "reviewer", "team": TEAM},
    {"username": "manager", "password": "handoff-manager", "role": "manager", "team": TEAM},
    # A superuser sees every queue without a membership.
    {"username": "admin", "password": "handoff-admin", "role": "admin", "team": None},
]

QUEUES: list[dict[str, Any]] = [
    {
        "slug": "refunds",
        "name": "Refunds",
        "label_schema": {
            "type": "object",
            "properties": {
                "category": {
                    "type": "string",
                    "title": "Category",
                    "description": "Why the refund is (or is not) due",
                    "enum": ["fraud", "goodwill", "policy_exception", "error"],
                },
                "refund_ok": {"type": "boolean", "title": "Refund justified"},
                "amount_adjusted": {
                    "type": "number",
                    "title": "Adjusted amount (EUR)",
                    "minimum": 0,
                },
            },
            "required": ["category"],
        },
        "routing_rules": [
            {
                "name": "Gold customers first",
                "when": {"field": "metadata.tier", "op": "eq", "value": "gold"},
                "then": {"priority": "high"},
            },
            {
                "name": "Large accounts are urgent",
                "when": {"field": "metadata.account_value", "op": "gt", "value": 100000},
                "then": {"priority": "urgent"},
            },
        ],
    },
    {
        "slug": "support",
        "name": "Support",
        "label_schema": {
            "type": "object",
            "properties": {
                "topic": {
                    "type": "string",
                    "title": "Topic",
                    "enum": ["account_access", "billing", "shipping", "privacy", "product"],
                },
                "tags": {
                    "type": "array",
                    "title": "Tags",
                    "items": {
                        "type": "string",
                        "enum": ["vip", "legal", "security", "bug", "churn_risk"],
                    },
                    "uniqueItems": True,
                },
                "follow_up": {"type": "string", "title": "Follow-up note", "maxLength": 500},
            },
            "required": ["topic"],
        },
        "routing_rules": [
            {
                "name": "Security issues jump the line",
                "when": {"field": "metadata.tags", "op": "contains", "value": "security"},
                "then": {"priority": "high"},
            },
        ],
    },
]


def _chat(*turns: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": role, "text": text} for role, text in turns]


CASES: list[dict[str, Any]] = [
    {
        "queue": "refunds",
        "summary": "Refund of 1,240 EUR exceeds the auto-approve limit",
        "confidence": 0.42,
        "priority": "normal",
        "reason": "low_confidence",
        "external_id": "ticket-8812",
        "metadata": {"tier": "gold", "account_value": 18500, "country": "DE"},
        "context": {
            "conversation": _chat(
                ("customer", "The espresso machine arrived with a cracked water tank."),
                ("agent", "I'm sorry! Could you send a photo of the damage?"),
                ("customer", "Sent. I want my money back, not a replacement."),
            ),
            "order": {"id": "A-77", "total": 1240, "currency": "EUR", "delivered": "2026-03-02"},
            "tool_calls": [
                {
                    "name": "get_order",
                    "arguments": {"id": "A-77"},
                    "result": {"status": "delivered"},
                },
                {
                    "name": "image_check",
                    "arguments": {"upload": "img-5521"},
                    "result": {"damage": 0.81},
                },
            ],
            "policy": "Auto-approve refunds up to 500 EUR.",
        },
        "proposed_action": {"type": "refund", "amount": 1240, "currency": "EUR"},
    },
    {
        "queue": "refunds",
        "summary": "Customer disputes a chargeback on a 389 EUR order marked delivered",
        "confidence": 0.55,
        "priority": "high",
        "reason": "policy",
        "external_id": "ticket-8820",
        "metadata": {"tier": "silver", "account_value": 2300, "country": "FR"},
        "context": {
            "conversation": _chat(
                ("customer", "My bank says you charged me for a parcel I never received."),
                ("agent", "Our carrier marked it delivered on 28 February."),
                ("customer", "Then they left it somewhere else. I already filed a chargeback."),
            ),
            "order": {"id": "B-1204", "total": 389, "currency": "EUR"},
            "chargeback": {"id": "cb_77812", "status": "needs_response", "due": "2026-03-20"},
            "tool_calls": [
                {
                    "name": "carrier_tracking",
                    "arguments": {"parcel": "DHL-55321"},
                    "result": {"status": "delivered", "signature": None},
                },
            ],
        },
        "proposed_action": {"type": "accept_chargeback", "amount": 389, "currency": "EUR"},
    },
    {
        "queue": "refunds",
        "summary": "Payment API timed out while refunding a double charge",
        "confidence": 0.88,
        "priority": "high",
        "reason": "tool_error",
        "external_id": "ticket-8833",
        "metadata": {"tier": "bronze", "account_value": 640},
        "context": {
            "conversation": _chat(
                ("customer", "I was charged twice for the same order, 59.90 each."),
                ("agent", "I see both charges; I'll refund the duplicate now."),
            ),
            "payments": [
                {"id": "pay_1", "amount": 59.9, "at": "2026-03-10T09:14:02Z"},
                {"id": "pay_2", "amount": 59.9, "at": "2026-03-10T09:14:05Z"},
            ],
            "tool_calls": [
                {
                    "name": "refund_payment",
                    "arguments": {"payment": "pay_2", "amount": 59.9},
                    "error": "504 Gateway Timeout after 30 s; refund state unknown",
                },
            ],
        },
        "proposed_action": {"type": "retry_refund", "payment": "pay_2", "amount": 59.9},
    },
    {
        "queue": "refunds",
        "summary": "Goodwill refund of 25 EUR for a delivery three days late",
        "confidence": 0.71,
        "priority": "low",
        "reason": "low_confidence",
        "external_id": "ticket-8841",
        "metadata": {"tier": "silver", "account_value": 980},
        "context": {
            "conversation": _chat(
                ("customer", "The birthday present arrived after the birthday. Not happy."),
                ("agent", "I'm sorry about that. Let me see what I can do."),
            ),
            "order": {
                "id": "C-310",
                "total": 149,
                "promised": "2026-03-05",
                "delivered": "2026-03-08",
            },
        },
        "proposed_action": {"type": "refund", "amount": 25, "currency": "EUR", "kind": "goodwill"},
    },
    {
        "queue": "refunds",
        "summary": "Refund requested for a software licence already activated",
        "confidence": 0.33,
        "priority": "normal",
        "reason": "policy",
        "external_id": "ticket-8850",
        "metadata": {"tier": "bronze", "account_value": 220},
        "context": {
            "conversation": _chat(
                ("customer", "The software doesn't run on my laptop. Refund please."),
                (
                    "agent",
                    "The licence was activated twice. Have you tried the compatibility mode?",
                ),
                ("customer", "Yes. It still crashes."),
            ),
            "licence": {"key": "XXXX-4411", "activations": 2, "bought": "2026-02-20"},
            "policy": "Activated digital goods are not refundable except for defects.",
        },
        "proposed_action": {"type": "reject_refund", "offer": "support_session"},
    },
    {
        "queue": "refunds",
        "summary": "Enterprise customer asks to refund 24,000 EUR for an unused annual plan",
        "confidence": 0.27,
        "priority": "high",
        "reason": "user_request",
        "external_id": "ticket-8866",
        "metadata": {"tier": "gold", "account_value": 250000, "segment": "enterprise"},
        "context": {
            "conversation": _chat(
                ("customer", "We renewed by mistake; the budget holder left the company."),
                ("agent", "The renewal was 12 days ago. Let me check what's possible."),
            ),
            "contract": {"id": "ENT-209", "value": 24000, "renewed": "2026-03-01", "seats_used": 0},
            "tool_calls": [
                {
                    "name": "usage_report",
                    "arguments": {"contract": "ENT-209"},
                    "result": {"logins": 0},
                },
            ],
        },
        "proposed_action": {
            "type": "refund",
            "amount": 24000,
            "currency": "EUR",
            "prorated": False,
        },
    },
    {
        "queue": "support",
        "summary": "Account locked after repeated failed 2FA attempts; customer asks for reset",
        "confidence": 0.48,
        "priority": "normal",
        "reason": "user_request",
        "external_id": "ticket-8871",
        "metadata": {"tier": "gold", "account_value": 12000, "tags": ["security"]},
        "context": {
            "conversation": _chat(
                ("customer", "I lost my phone and now I'm locked out of my account."),
                ("agent", "For your security I need to verify your identity first."),
                ("customer", "I can tell you my last order number: A-6610."),
            ),
            "account": {"id": "acct_4410", "locked_at": "2026-03-11T07:02:00Z", "failed_2fa": 6},
            "tool_calls": [
                {
                    "name": "identity_check",
                    "arguments": {"order": "A-6610"},
                    "result": {"match": True},
                },
            ],
        },
        "proposed_action": {"type": "reset_2fa", "account": "acct_4410", "notify_email": True},
    },
    {
        "queue": "support",
        "summary": "GDPR data export request (Article 15) for a closed account",
        "confidence": 0.62,
        "priority": "normal",
        "reason": "user_request",
        "external_id": "ticket-8879",
        "metadata": {"tier": "bronze", "account_value": 90, "tags": ["legal"]},
        "context": {
            "conversation": _chat(
                ("customer", "Under GDPR I request a copy of all data you hold about me."),
                ("agent", "Your account was closed in January; I'll check what we still keep."),
            ),
            "account": {"id": "acct_1203", "closed": "2026-01-14", "region": "EU"},
            "policy": "Data exports must be answered within 30 days; identity verified first.",
        },
        "proposed_action": {"type": "start_data_export", "account": "acct_1203"},
    },
    {
        "queue": "support",
        "summary": "Change delivery address for an order that has already shipped",
        "confidence": 0.58,
        "priority": "normal",
        "reason": "policy",
        "external_id": "ticket-8884",
        "metadata": {"tier": "silver", "account_value": 1450},
        "context": {
            "conversation": _chat(
                ("customer", "I moved yesterday. Please send order D-991 to my new address."),
                ("agent", "The parcel left our warehouse this morning."),
            ),
            "order": {"id": "D-991", "status": "shipped", "carrier": "UPS"},
            "addresses": {"old": "12 Elm Street, Leeds", "new": "4 Mill Lane, York"},
        },
        "proposed_action": {"type": "carrier_redirect", "order": "D-991", "fee": 6.5},
    },
    {
        "queue": "support",
        "summary": "Policy question: can a subscription be transferred to a family member?",
        "confidence": 0.39,
        "priority": "low",
        "reason": "policy",
        "external_id": "ticket-8890",
        "metadata": {"tier": "silver", "account_value": 610},
        "context": {
            "conversation": _chat(
                ("customer", "My father passed away. Can my mother take over his subscription?"),
                ("agent", "I'm very sorry for your loss. Let me find out how we can help."),
            ),
            "subscription": {"id": "sub_5531", "plan": "family", "renews": "2026-06-01"},
            "policy": "Subscriptions are personal and not transferable (no exception listed).",
        },
        "proposed_action": {
            "type": "transfer_subscription",
            "to": "new_account",
            "waive_fee": True,
        },
    },
    {
        "queue": "support",
        "summary": "CRM lookup failed, so the customer's identity could not be verified",
        "confidence": 0.21,
        "priority": "normal",
        "reason": "tool_error",
        "external_id": "ticket-8897",
        "metadata": {"tier": "bronze", "account_value": 300},
        "context": {
            "conversation": _chat(
                ("customer", "Please update the email on my account to sam@example.org."),
                ("agent", "One moment while I confirm who you are."),
            ),
            "tool_calls": [
                {
                    "name": "crm_lookup",
                    "arguments": {"phone": "+44 7700 900123"},
                    "error": "ConnectionResetError: CRM did not answer (3 attempts)",
                },
            ],
        },
        "proposed_action": {"type": "update_email", "email": "sam@example.org"},
    },
    {
        "queue": "support",
        "summary": "Customer wants to cancel and have the account deleted after a billing error",
        "confidence": 0.51,
        "priority": "high",
        "reason": "user_request",
        "external_id": "ticket-8903",
        "metadata": {"tier": "gold", "account_value": 7800, "tags": ["churn_risk"]},
        "context": {
            "conversation": _chat(
                ("customer", "You billed me for the premium plan I downgraded from. I'm done."),
                ("agent", "I see the downgrade didn't apply. I can refund the difference."),
                ("customer", "Refund it and delete my account."),
            ),
            "billing": {"plan_billed": "premium", "plan_expected": "basic", "difference": 18},
        },
        "proposed_action": {"type": "refund_and_close", "amount": 18, "delete_account": True},
    },
]
