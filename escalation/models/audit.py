"""The append-only, hash-chained audit log. Written only through escalation.audit.record()."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ActorKind(models.TextChoices):
    USER = "user", "User"
    AGENT = "agent", "Agent"
    SYSTEM = "system", "System"


class AuditEvent(models.Model):
    # The sequence is the primary key: gap-free and strictly increasing because events are
    # numbered under the chain-head lock, held until commit (see escalation.audit).
    seq = models.BigIntegerField(primary_key=True)
    created_at = models.DateTimeField()
    actor_kind = models.CharField(max_length=10, choices=ActorKind.choices)
    # Plain foreign keys, no cascades: rows they point at are deactivated, never deleted, and a
    # name snapshot keeps the entry readable whatever happens to them.
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    actor_agent = models.ForeignKey(
        "escalation.Agent", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_name = models.CharField(max_length=150)
    verb = models.CharField(max_length=64)
    # No single-column indexes: audit_case_idx and the two queue indexes lead with them.
    escalation = models.ForeignKey(
        "escalation.Escalation",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="audit_events",
        db_index=False,
    )
    queue = models.ForeignKey(
        "escalation.Queue",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    data = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["seq"]
        indexes = [
            models.Index(fields=["escalation", "seq"], name="audit_case_idx"),
            models.Index(fields=["verb", "created_at"], name="audit_verb_idx"),
            # The breach digest reads breach events after a cursor.
            models.Index(fields=["verb", "seq"], name="audit_verb_seq_idx"),
            models.Index(fields=["created_at"], name="audit_time_idx"),
            models.Index(fields=["queue", "created_at"], name="audit_queue_idx"),
            # The manager's audit log pages one queue's events newest first, keyed on seq.
            models.Index(fields=["queue", "seq"], name="audit_queue_seq_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.verb} by {self.actor_name}"


class AuditChainHead(models.Model):
    """One row: the last sequence and hash. Locked (SELECT … FOR UPDATE) by every audit write
    until commit, which keeps the chain linear."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)


class AuditVerification(models.Model):
    """One run of verify_chain() asked for from the audit page; the page shows the last finished
    one. Written by escalation.audit (request_verification, run_verification)."""

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    ok = models.BooleanField(null=True)
    checked = models.BigIntegerField(default=0)
    head_seq = models.BigIntegerField(default=0)
    first_bad_seq = models.BigIntegerField(null=True, blank=True)
    problem = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        state = "running" if self.finished_at is None else ("ok" if self.ok else "failed")
        return f"verification {self.pk} ({state})"
