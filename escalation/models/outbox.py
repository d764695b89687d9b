"""The outbox: follow-up work written in the same transaction as the change that needs it.

Celery is only the doorbell: after commit the row's id is sent to a worker; a periodic task
re-sends whatever is still undone (broker down, worker killed), so nothing is lost.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class OutboxItem(models.Model):
    kind = models.CharField(max_length=40)
    escalation = models.ForeignKey(
        "escalation.Escalation",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    available_at = models.DateTimeField(default=timezone.now)
    # A worker running the item holds it until this time; a killed worker's item is picked up
    # again once it passes.
    locked_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    done_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["available_at"],
                name="outbox_pending_idx",
                condition=Q(done_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"


class SweepCursor(models.Model):
    """Where a periodic job that walks an append-only table got to (e.g. the last audit event
    whose breach has been e-mailed), so a restart neither repeats nor skips."""

    name = models.CharField(max_length=64, primary_key=True)
    position = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} at {self.position}"
