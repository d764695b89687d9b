"""Webhook deliveries: one row per outcome an agent must hear about, retried on a schedule kept
in the database, and a log of every attempt."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    DEAD = "dead", "Dead"


class Delivery(models.Model):
    # Stable across retries and redeliveries, so receivers can drop duplicates.
    webhook_id = models.CharField(max_length=64, unique=True)
    escalation = models.ForeignKey(
        "escalation.Escalation", on_delete=models.PROTECT, related_name="deliveries"
    )
    agent = models.ForeignKey(
        "escalation.Agent", on_delete=models.PROTECT, related_name="deliveries"
    )
    event_type = models.CharField(max_length=40)
    url = models.CharField(max_length=2000)
    # The exact body sent on every attempt (its "timestamp" is the event's time).
    body = models.TextField()
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # An attempt in progress holds the row until then; a killed worker's attempt is picked up
    # again by the periodic task once it passes (not by the broker's visibility timeout).
    locked_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    dead_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], name="delivery_due_idx", condition=Q(status="pending")
            ),
            models.Index(fields=["status", "dead_at"], name="delivery_status_idx"),
            # The managers' page: newest first within each status.
            models.Index(fields=["status", "-created_at"], name="delivery_status_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} to {self.url} ({self.status})"


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.PROTECT, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
