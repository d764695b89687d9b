"""Reads that span rows: the inbox's urgency order and, later, manager statistics."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q, QuerySet

from escalation.models import Escalation, Status

# The inbox order: by next due time (so breached cases come first, then those closest to their
# target), ties by priority, then age. One plain sort key, so the inbox pages by keyset on an
# index and Next case takes exactly the inbox's first case.
URGENCY_ORDER = ("next_due_at", "priority_rank", "created_at", "id")


def claimable_cases(queue_ids, now: datetime) -> QuerySet[Escalation]:
    """Open cases, and claimed ones whose lease already ran out (not yet swept back to open)."""
    return Escalation.objects.filter(
        Q(status=Status.OPEN) | Q(status=Status.CLAIMED, lease_expires_at__lte=now),
        queue_id__in=queue_ids,
    ).order_by(*URGENCY_ORDER)


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
