"""The case (Escalation) and what hangs off it: its resolution, context updates and transfers.

Only escalation.transitions changes a case's status; the methods here only read one row.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q

from escalation import sla


class Status(models.TextChoices):
    OPEN = "open", "Open"
    CLAIMED = "claimed", "Claimed"
    RESOLVED = "resolved", "Resolved"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"


ACTIVE_STATUSES = (Status.OPEN, Status.CLAIMED)
TERMINAL_STATUSES = (Status.RESOLVED, Status.CANCELLED, Status.EXPIRED)


class Priority(models.TextChoices):
    URGENT = "urgent", "Urgent"
    HIGH = "high", "High"
    NORMAL = "normal", "Normal"
    LOW = "low", "Low"


# Lower sorts first: the inbox breaks due-time ties by priority.
PRIORITY_RANK = {Priority.URGENT: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3}


class Decision(models.TextChoices):
    APPROVE = "approve", "Approve"
    MODIFY = "modify", "Modify"
    REJECT = "reject", "Reject"


class Escalation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of their own: case_agent_status_idx and case_queue_status_idx lead with them,
    # and every index is one more write per create and per claim or decision.
    agent = models.ForeignKey(
        "escalation.Agent", on_delete=models.PROTECT, related_name="cases", db_index=False
    )
    queue = models.ForeignKey(
        "escalation.Queue", on_delete=models.PROTECT, related_name="cases", db_index=False
    )
    summary = models.CharField(max_length=200)
    confidence = models.FloatField()
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    priority_rank = models.PositiveSmallIntegerField(default=PRIORITY_RANK[Priority.NORMAL])
    reason = models.SlugField(max_length=64, blank=True, db_index=False)  # never filtered on
    context = models.JSONField(default=dict)
    proposed_action = models.JSONField(null=True, blank=True)
    external_id = models.CharField(max_length=255, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    callback_url = models.URLField(max_length=2000, blank=True)
    agent_version = models.CharField(max_length=100, blank=True)
    # The learning loop: how the case came to people, and the scope whose policy sent it
    # (null for a case posted straight to POST /api/v1/escalations).
    label_source = models.CharField(max_length=10, default="escalated")
    scope = models.ForeignKey(
        "escalation.Scope", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    # SLA clock, set whenever the case enters a queue (creation, routing to a queue, transfer).
    entered_queue_at = models.DateTimeField()
    claim_due_at = models.DateTimeField(null=True, blank=True)
    resolve_due_at = models.DateTimeField(null=True, blank=True)
    claim_risk_at = models.DateTimeField(null=True, blank=True)
    resolve_risk_at = models.DateTimeField(null=True, blank=True)
    # The claim times while open, the resolve times while claimed, null once terminal: stored
    # so the inbox order and the breach sweep are one indexed range scan.
    next_due_at = models.DateTimeField(null=True, blank=True)
    next_risk_at = models.DateTimeField(null=True, blank=True)
    claim_breached_at = models.DateTimeField(null=True, blank=True)
    resolve_breached_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()

    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="claimed_cases",
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    # The first claim ever (kept through release, lease expiry and transfer): time to claim
    # on the SLA dashboard runs from created_at to here.
    first_claimed_at = models.DateTimeField(null=True, blank=True)
    # A fresh token per claim fences stale holders: a resolve must present the current token
    # while the lease is still running, even before any sweep has returned the case.
    claim_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    routed_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.CharField(max_length=500, blank=True)
    cancelled_by_agent = models.BooleanField(default=False)
    redacted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["next_due_at", "priority_rank", "created_at", "id"],
                name="case_active_due_idx",
                condition=Q(status__in=["open", "claimed"]),
            ),
            models.Index(fields=["queue", "status"], name="case_queue_status_idx"),
            # The statistics fold rebuilds one day of cases at a time.
            models.Index(fields=["created_at"], name="case_created_idx"),
            # The inbox, one queue at a time: each visible queue's cases in urgency order, so a
            # page is a short range scan per queue however many cases other queues hold (the
            # global index above makes a reviewer's page skip every other team's cases). Its
            # (queue, next_due_at) prefix also serves the breached counts per queue.
            models.Index(
                fields=["queue", "next_due_at", "priority_rank", "created_at", "id"],
                name="case_queue_urgency_idx",
                condition=Q(status__in=["open", "claimed"]),
            ),
            models.Index(fields=["agent", "status"], name="case_agent_status_idx"),
            models.Index(fields=["agent", "external_id"], name="case_agent_external_idx"),
            models.Index(fields=["agent", "updated_at"], name="case_agent_updated_idx"),
            # The inbox's "anything changed?" poll: max(updated_at) per visible queue.
            models.Index(fields=["queue", "updated_at"], name="case_queue_updated_idx"),
            # The breach sweep reads only cases coming due: open ones past their claim target
            # and active ones past their resolve target, each not yet flagged.
            models.Index(
                fields=["claim_due_at"],
                name="case_claim_breach_idx",
                condition=Q(status="open", claim_breached_at__isnull=True),
            ),
            models.Index(
                fields=["resolve_due_at"],
                name="case_resolve_breach_idx",
                condition=Q(status__in=["open", "claimed"], resolve_breached_at__isnull=True),
            ),
            models.Index(
                fields=["lease_expires_at"],
                name="case_lease_idx",
                condition=Q(status="claimed"),
            ),
            models.Index(
                fields=["expires_at"],
                name="case_expiry_idx",
                condition=Q(status__in=["open", "claimed"]),
            ),
            models.Index(
                fields=["routed_at"], name="case_unrouted_idx", condition=Q(routed_at__isnull=True)
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(confidence__gte=0) & Q(confidence__lte=1),
                name="case_confidence_0_1",
            ),
            models.CheckConstraint(
                condition=~Q(status="claimed")
                | (
                    Q(claimed_by__isnull=False)
                    & Q(claim_token__isnull=False)
                    & Q(lease_expires_at__isnull=False)
                ),
                name="case_claimed_has_holder",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.summary} ({self.get_status_display()})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def lease_is_live(self, now: datetime) -> bool:
        return (
            self.status == Status.CLAIMED
            and self.lease_expires_at is not None
            and self.lease_expires_at > now
        )

    def sla_state(self, now: datetime) -> str:
        """'ok', 'at_risk' or 'breached' for the clock running now (none once terminal)."""
        if self.is_terminal:
            return "ok"
        return sla.sla_state(now, self.next_risk_at, self.next_due_at)

    @property
    def is_breached(self) -> bool:
        return bool(self.claim_breached_at or self.resolve_breached_at)


class Resolution(models.Model):
    escalation = models.OneToOneField(
        Escalation, on_delete=models.PROTECT, primary_key=True, related_name="resolution"
    )
    decision = models.CharField(max_length=10, choices=Decision.choices)
    final_action = models.JSONField(null=True, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    note = models.TextField(blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="resolutions"
    )
    resolved_at = models.DateTimeField()
    # Shadow cases: after deciding blind, whether the agent's proposal would have been
    # acceptable (approve / modify / reject) — the label. QA cases: a reviewer may flag the
    # agent's action as critical, which takes the scope's autonomy back at once.
    verdict = models.CharField(max_length=10, choices=Decision.choices, blank=True)
    verdict_at = models.DateTimeField(null=True, blank=True)
    critical = models.BooleanField(default=False)
    # The case's scope epoch when the label was made (escalation.autonomy): a fall-back starts
    # a new epoch, and certificates count only the current one's labels.
    epoch = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["resolved_at"], name="resolution_time_idx")]


class ContextUpdate(models.Model):
    escalation = models.ForeignKey(
        Escalation, on_delete=models.PROTECT, related_name="context_updates"
    )
    note = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "pk"]


class Transfer(models.Model):
    escalation = models.ForeignKey(Escalation, on_delete=models.PROTECT, related_name="transfers")
    from_queue = models.ForeignKey("escalation.Queue", on_delete=models.PROTECT, related_name="+")
    to_queue = models.ForeignKey("escalation.Queue", on_delete=models.PROTECT, related_name="+")
    by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "pk"]
