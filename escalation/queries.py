"""Reads that span rows: the inbox's urgency order and, later, manager statistics."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Case, IntegerField, Q, QuerySet, Value, When

from escalation.models import Escalation, Status


def urgency_order(now: datetime) -> list:
    """Breached first, then at risk, then by next due time, ties by priority, then age."""
    sla_band = Case(
        When(next_due_at__lte=now, then=Value(0)),
        When(next_risk_at__lte=now, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )
    return [sla_band.asc(), "next_due_at", "priority_rank", "created_at"]


def claimable_cases(queue_ids, now: datetime) -> QuerySet[Escalation]:
    """Open cases, and claimed ones whose lease already ran out (not yet swept back to open)."""
    return Escalation.objects.filter(
        Q(status=Status.OPEN) | Q(status=Status.CLAIMED, lease_expires_at__lte=now),
        queue_id__in=queue_ids,
    ).order_by(*urgency_order(now))


def queue_depths() -> list[dict]:
    """[{queue, status, count}] for every active queue and active status (zeros included)."""
    from django.db.models import Count

    from escalation.models import Queue

    counts = {
        (row["queue__slug"], row["status"]): row["n"]
        for row in Escalation.objects.filter(status__in=[Status.OPEN, Status.CLAIMED])
        .values("queue__slug", "status")
        .annotate(n=Count("pk"))
    }
    return [
        {"queue": slug, "status": status, "count": counts.get((slug, status), 0)}
        for slug in Queue.objects.filter(is_active=True).values_list("slug", flat=True)
        for status in (Status.OPEN, Status.CLAIMED)
    ]


def oldest_open_ages(now: datetime | None = None) -> dict[str, float]:
    """Seconds since the oldest open case entered each active queue (0 when none)."""
    from django.db.models import Min
    from django.utils import timezone

    from escalation.models import Queue

    now = now or timezone.now()
    oldest = dict(
        Escalation.objects.filter(status=Status.OPEN)
        .values_list("queue__slug")
        .annotate(first=Min("entered_queue_at"))
    )
    return {
        slug: max(0.0, (now - oldest[slug]).total_seconds()) if slug in oldest else 0.0
        for slug in Queue.objects.filter(is_active=True).values_list("slug", flat=True)
    }
