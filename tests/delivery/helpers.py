"""Shared steps of the delivery tests: close a case, find its delivery, run due attempts."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from escalation import delivery, transitions
from escalation.audit import Actor
from escalation.models import AuditEvent, Delivery, DeliveryAttempt


def resolve(case, reviewer, *, decision: str = "approve", **kw):
    """Claim and resolve `case` as `reviewer`."""
    actor = Actor.for_user(reviewer)
    claimed = transitions.claim(actor=actor, case_id=case.pk)
    return transitions.resolve(
        actor=actor, case_id=case.pk, claim_token=claimed.claim_token, decision=decision, **kw
    )


def delivery_of(case) -> Delivery:
    return Delivery.objects.get(escalation_id=case.pk)


def fresh(item: Delivery) -> Delivery:
    return Delivery.objects.get(pk=item.pk)


def attempt_when_due(item: Delivery, at: datetime | None = None) -> str:
    """One attempt at the delivery's next due time (or now, if that is later)."""
    due = fresh(item).next_attempt_at
    now = max(at or timezone.now(), due)
    return delivery.attempt(item.pk, now=now)


def attempt_log(item: Delivery) -> list[tuple[int, int | None, str]]:
    return list(
        DeliveryAttempt.objects.filter(delivery_id=item.pk)
        .order_by("pk")
        .values_list("number", "status_code", "error")
    )


def delivery_verbs(case) -> list[str]:
    return list(
        AuditEvent.objects.filter(escalation_id=case.pk, verb__startswith="delivery.")
        .order_by("seq")
        .values_list("verb", flat=True)
    )


def audit_data(case, verb: str) -> list[dict]:
    return list(
        AuditEvent.objects.filter(escalation_id=case.pk, verb=verb)
        .order_by("seq")
        .values_list("data", flat=True)
    )


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
