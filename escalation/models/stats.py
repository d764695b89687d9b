"""Pre-aggregated statistics behind the manager console, so its pages read a few thousand
rollup rows instead of scanning a million cases (see escalation.rollups for how each is kept).

- CalibrationCell: per agent, agent version, queue and confidence grid point (0..100), the
  resolved cases' counts and confidence sums. Kept exactly, in the resolve transaction.
- CaseDayStat, ResolutionDayStat, DurationDayStat: per UTC day, rebuilt from the case rows by
  a periodic fold for every day whose cases changed (a few seconds behind at most).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class CalibrationCell(models.Model):
    """The resolved cases of one (agent, agent_version, queue) at one grid point
    g = floor((confidence + EPS) * 100), as escalation.queries.calibration_counts groups them."""

    agent = models.ForeignKey("escalation.Agent", on_delete=models.PROTECT, related_name="+")
    agent_version = models.CharField(max_length=100, blank=True)
    queue = models.ForeignKey("escalation.Queue", on_delete=models.PROTECT, related_name="+")
    # The learning loop's label source (escalated / shadow / assisted / qa) and the scope's
    # epoch when the label was made (a fall-back starts a new epoch).
    source = models.CharField(max_length=10, default="escalated")
    epoch = models.PositiveIntegerField(default=0)
    g = models.PositiveSmallIntegerField()
    n = models.PositiveIntegerField(default=0)
    approved = models.PositiveIntegerField(default=0)
    modified = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    sum_c = models.FloatField(default=0.0)
    sum_c2 = models.FloatField(default=0.0)
    sum_c_approved = models.FloatField(default=0.0)
    min_c = models.FloatField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "agent_version", "queue", "source", "epoch", "g"],
                name="calibration_cell_key",
            )
        ]


class CaseDayStat(models.Model):
    """Cases created on `day` (UTC) per queue, agent, priority and confidence band (0..9):
    how many, how many breached a target, were ever claimed, are resolved."""

    day = models.DateField()
    queue = models.ForeignKey("escalation.Queue", on_delete=models.PROTECT, related_name="+")
    agent = models.ForeignKey("escalation.Agent", on_delete=models.PROTECT, related_name="+")
    priority = models.CharField(max_length=10)
    band = models.PositiveSmallIntegerField()
    cases = models.PositiveIntegerField()
    breached = models.PositiveIntegerField()
    claimed = models.PositiveIntegerField()
    resolved = models.PositiveIntegerField()

    class Meta:
        indexes = [
            models.Index(fields=["queue", "day"], name="case_day_stat_idx"),
            models.Index(fields=["agent", "queue"], name="case_day_stat_agent_idx"),
        ]


class ResolutionDayStat(models.Model):
    """Resolutions made on `day` (UTC) per queue, reviewer and decision, and how many of those
    cases had breached a target."""

    day = models.DateField()
    queue = models.ForeignKey("escalation.Queue", on_delete=models.PROTECT, related_name="+")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    decision = models.CharField(max_length=10)
    resolved = models.PositiveIntegerField()
    breached = models.PositiveIntegerField()

    class Meta:
        indexes = [models.Index(fields=["queue", "day"], name="resolution_day_stat_idx")]


class Metric(models.TextChoices):
    # Keyed by the day the case was created, per priority.
    CLAIM = "claim", "time to claim"
    RESOLVE = "resolve", "time to resolve"
    # Keyed by the day of the resolution, per reviewer.
    REVIEWER_RESOLVE = "reviewer_resolve", "time to resolve, by who resolved"
    HANDLING = "handling", "handling time (claim to resolution)"


class DurationDayStat(models.Model):
    """One bucket of a duration histogram (escalation.rollups.bucket_of: 8 log-spaced buckets
    per doubling) for one metric, day, queue and priority or reviewer: how many durations fell
    in it and the smallest and largest of them, in seconds."""

    metric = models.CharField(max_length=20, choices=Metric.choices)
    day = models.DateField()
    queue = models.ForeignKey("escalation.Queue", on_delete=models.PROTECT, related_name="+")
    priority = models.CharField(max_length=10, blank=True)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    bucket = models.SmallIntegerField()
    n = models.PositiveIntegerField()
    min_s = models.FloatField()
    max_s = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["metric", "queue", "day"], name="duration_day_stat_idx")]
