"""Periodic sweeps, each in bounded batches so one run never holds the database for long.

Each reads only the cases coming due through a partial index (its cost follows the number
due, not the number open), then hands the cases to their transition, which locks the rows
and re-checks: two sweepers racing, or a sweep re-run after a killed worker, change nothing
twice. Breaches are recorded a batch per transaction; the other sweeps, a case per
transaction (each leads to more work: routing, notifications, deliveries)."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from escalation import delivery, notifications, outbox, transitions
from escalation.models import AuditEvent, Escalation, IdempotencyRecord, Status, SweepCursor
from escalation.models.agents import IDEMPOTENCY_TTL
from escalation.models.cases import ACTIVE_STATUSES

BATCH = 500


def redrive_outbox(now: datetime | None = None, limit: int = BATCH) -> int:
    """Re-send undone outbox items (broker was down, worker died); returns how many were sent."""
    now = now or timezone.now()
    sent: list[int] = []
    for item_id in outbox.due_items(now, limit):
        if not outbox.send(item_id):
            break  # broker still down: the next run tries again
        sent.append(item_id)
    outbox.resent(sent, now)
    return len(sent)


def forget_idempotency_keys(now: datetime | None = None, limit: int = 5000) -> int:
    """Delete stored idempotent answers past their 24 h, a bounded batch per run."""
    now = now or timezone.now()
    stale = IdempotencyRecord.objects.filter(created_at__lte=now - IDEMPOTENCY_TTL).values_list(
        "pk", flat=True
    )[:limit]
    deleted, _ = IdempotencyRecord.objects.filter(pk__in=list(stale)).delete()
    return deleted


def sweep_breaches(now: datetime | None = None, limit: int = BATCH) -> int:
    """Record missed claim and resolve targets; returns how many breaches were recorded."""
    now = now or timezone.now()
    missed_claim = Escalation.objects.filter(
        status=Status.OPEN, claim_breached_at__isnull=True, claim_due_at__lte=now
    ).order_by("claim_due_at")
    missed_resolve = Escalation.objects.filter(
        status__in=ACTIVE_STATUSES, resolve_breached_at__isnull=True, resolve_due_at__lte=now
    ).order_by("resolve_due_at")
    case_ids = {
        *missed_claim.values_list("pk", flat=True)[:limit],
        *missed_resolve.values_list("pk", flat=True)[:limit],
    }
    return transitions.record_breaches(case_ids=case_ids, now=now)


def sweep_leases(now: datetime | None = None, limit: int = BATCH) -> int:
    """Return claims whose lease ran out to open; returns how many."""
    now = now or timezone.now()
    case_ids = (
        Escalation.objects.filter(status=Status.CLAIMED, lease_expires_at__lte=now)
        .order_by("lease_expires_at")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(
        transitions.expire_lease(case_id=case_id, now=now) is not None for case_id in list(case_ids)
    )


def sweep_expiry(now: datetime | None = None, limit: int = BATCH) -> int:
    """Expire cases past their queue's horizon; returns how many."""
    now = now or timezone.now()
    case_ids = (
        Escalation.objects.filter(status__in=ACTIVE_STATUSES, expires_at__lte=now)
        .order_by("expires_at")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(
        transitions.expire(case_id=case_id, now=now) is not None for case_id in list(case_ids)
    )


def sweep_deliveries(now: datetime | None = None, limit: int = BATCH) -> int:
    """Ring for every delivery whose next attempt is due and that no live attempt holds:
    retries on schedule, and attempts whose worker was killed (their lease ran out)."""
    now = now or timezone.now()
    sent = 0
    for delivery_id in delivery.due_deliveries(now, limit):
        if not delivery.ring(delivery_id):
            break  # broker down: the next run tries again
        sent += 1
    return sent


BREACH_VERBS = ("sla.claim_breached", "sla.resolve_breached")
BREACH_DIGEST = "breach-digest"


def notify_breaches(limit: int = 1000) -> int:
    """E-mail each queue's managers one digest of the breaches recorded since the last run.

    The audit log is the source and a cursor marks how far it was read; the cursor moves only
    after the mails are sent, so a crash repeats a digest rather than losing one."""
    cursor, _ = SweepCursor.objects.get_or_create(name=BREACH_DIGEST)
    events = list(
        AuditEvent.objects.filter(verb__in=BREACH_VERBS, seq__gt=cursor.position)
        .select_related("escalation", "queue")
        .order_by("seq")[:limit]
    )
    if not events:
        return 0
    by_queue: dict = {}
    for event in events:
        by_queue.setdefault(event.queue, []).append(event)
    for queue, queue_events in by_queue.items():
        notifications.email_breach_digest(queue, queue_events)
    SweepCursor.objects.filter(name=BREACH_DIGEST).update(position=events[-1].seq)
    return len(events)
