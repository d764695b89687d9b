"""Queues (a team's named inbox with its SLA policy, lease, expiry, label schema and routing
rules) and the business-hours calendars their SLA clocks may count in."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from escalation import labels, routing, sla

DEFAULT_LEASE_SECONDS = 15 * 60
DEFAULT_EXPIRE_AFTER_SECONDS = 7 * 24 * 3600


def default_policy() -> dict:
    return sla.normalize_policy(None)


def default_label_schema() -> dict:
    return dict(labels.EMPTY_SCHEMA)


class BusinessCalendar(models.Model):
    name = models.SlugField(unique=True)
    timezone = models.CharField(max_length=64, default="UTC")
    # {"mon": [["09:00", "18:00"]], ...}: local working intervals per weekday.
    weekly_hours = models.JSONField(default=dict)
    holidays = models.JSONField(default=list, blank=True)  # ["2026-12-25", ...] local dates

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        try:
            self.as_calendar()
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    def as_calendar(self) -> sla.Calendar:
        return sla.Calendar.parse(self.timezone, self.weekly_hours, self.holidays)


class Queue(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="queues")
    # {"urgent": {"claim": 300, "resolve": 1800}, ...} in seconds (of calendar time if a
    # calendar is set).
    sla_policy = models.JSONField(default=default_policy)
    calendar = models.ForeignKey(
        BusinessCalendar, null=True, blank=True, on_delete=models.PROTECT, related_name="queues"
    )
    lease_seconds = models.PositiveIntegerField(default=DEFAULT_LEASE_SECONDS)
    expire_after_seconds = models.PositiveIntegerField(default=DEFAULT_EXPIRE_AFTER_SECONDS)
    label_schema = models.JSONField(default=default_label_schema)
    # The label fields in the order the schema was written: PostgreSQL's jsonb keeps object
    # keys sorted by length, which would shuffle the decision form.
    label_order = models.JSONField(default=list, blank=True, editable=False)
    routing_rules = models.JSONField(default=list, blank=True)
    raise_priority_on_breach = models.BooleanField(
        default=False, help_text="Raise a case's priority one step when it breaches a target."
    )
    is_active = models.BooleanField(default=True)
    # The learning loop: the error budget and 1 - confidence of its certificates, and whether
    # a scope is promoted as soon as it certifies (otherwise a manager presses Promote).
    autonomy_alpha = models.FloatField(default=0.02)
    autonomy_delta = models.FloatField(default=0.05)
    auto_promote = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def save(self, *args, **kwargs) -> None:
        names = list((self.label_schema or {}).get("properties", {}))
        # A schema written in Python (admin, commands, API) arrives in its author's order; one
        # read back from jsonb has the same names, so a stored order is only replaced when the
        # names change.
        if set(names) != set(self.label_order or []):
            self.label_order = names
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "label_schema" in update_fields:
            kwargs["update_fields"] = {*update_fields, "label_order"}
        super().save(*args, **kwargs)

    def clean(self) -> None:
        """The one check of a queue's configuration, used by the admin and create_queue."""
        errors = {}
        for field, check in (
            ("sla_policy", sla.normalize_policy),
            ("label_schema", labels.check_schema),
            ("routing_rules", routing.check_rules),
        ):
            try:
                setattr(self, field, check(getattr(self, field)))
            except ValueError as exc:
                errors[field] = str(exc)
        if self.lease_seconds is not None and self.lease_seconds < 10:
            errors["lease_seconds"] = "a lease must last at least 10 seconds"
        if self.expire_after_seconds is not None and self.expire_after_seconds < 10:
            errors["expire_after_seconds"] = "the expiry horizon must be at least 10 seconds"
        # The learning loop's budget: its CUSUM needs alpha well below a half (see
        # escalation.autonomy_math.cusum_constants).
        for field, top in (("autonomy_alpha", 0.4), ("autonomy_delta", 0.5)):
            value = getattr(self, field)
            if value is not None and not 0 < value <= top:
                errors[field] = f"must be a number in (0, {top}]"
        if errors:
            raise ValidationError(errors)

    def label_fields(self) -> list[dict]:
        return labels.fields(self.label_schema or labels.EMPTY_SCHEMA, self.label_order)

    def get_calendar(self) -> sla.Calendar | None:
        return self.calendar.as_calendar() if self.calendar_id else None

    def targets(self, priority: str) -> tuple[int, int]:
        return sla.targets(sla.normalize_policy(self.sla_policy), priority)
