"""Periodic sweeps, each in bounded batches so one run never holds the database for long."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from escalation import outbox
from escalation.models import IdempotencyRecord
from escalation.models.agents import IDEMPOTENCY_TTL

BATCH = 500


def redrive_outbox(now: datetime | None = None, limit: int = BATCH) -> int:
    """Re-send undone outbox items (broker was down, worker died); returns how many were sent."""
    now = now or timezone.now()
    sent = 0
    for item_id in outbox.due_items(now, limit):
        if not outbox.send(item_id):
            break  # broker still down: the next run tries again
        sent += 1
    return sent


def forget_idempotency_keys(now: datetime | None = None, limit: int = 5000) -> int:
    """Delete stored idempotent answers past their 24 h, a bounded batch per run."""
    now = now or timezone.now()
    stale = IdempotencyRecord.objects.filter(created_at__lte=now - IDEMPOTENCY_TTL).values_list(
        "pk", flat=True
    )[:limit]
    deleted, _ = IdempotencyRecord.objects.filter(pk__in=list(stale)).delete()
    return deleted
