"""The learning loop: per (agent, agent version, queue) a mode, the certificate it relies on,
the policy decisions made under it and its history (escalation.autonomy changes them)."""

from __future__ import annotations

from django.db import models


class Mode(models.TextChoices):
    # People decide every case without seeing the proposal, then judge it: unbiased labels.
    SHADOW = "shadow", "Shadow"
    # People decide every case with the proposal shown (today's behaviour).
    ASSISTED = "assisted", "Assisted"
    # The agent acts alone at or above the certified threshold; its actions are QA-sampled.
    AUTONOMOUS = "autonomous", "Autonomous"


class LabelSource(models.TextChoices):
    """How a case came to people, which decides whether its label is unbiased."""

    ESCALATED = "escalated", "Escalated"  # the agent chose to send it (biased by its cut-off)
    SHADOW = "shadow", "Shadow"
    ASSISTED = "assisted", "Assisted"
    QA = "qa", "QA sample"


UNBIASED_SOURCES = (LabelSource.SHADOW, LabelSource.ASSISTED, LabelSource.QA)


class Health(models.TextChoices):
    GREEN = "green", "Green"
    AMBER = "amber", "Amber"  # no evidence of a breach, but the QA evidence cannot re-certify
    RED = "red", "Red"


class Scope(models.Model):
    agent = models.ForeignKey("escalation.Agent", on_delete=models.PROTECT, related_name="+")
    agent_version = models.CharField(max_length=100, blank=True)
    queue = models.ForeignKey("escalation.Queue", on_delete=models.PROTECT, related_name="+")
    mode = models.CharField(max_length=12, choices=Mode.choices, default=Mode.ASSISTED)
    # While autonomous: the threshold and the certificate it came from.
    theta = models.FloatField(null=True, blank=True)
    certificate = models.ForeignKey(
        "escalation.Certificate", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Labels count towards a certificate only within the current epoch: a fall-back starts a
    # new one, so re-promotion needs labels collected after it.
    epoch = models.PositiveIntegerField(default=0)
    health = models.CharField(max_length=6, choices=Health.choices, default=Health.GREEN)
    cusum = models.FloatField(default=0.0)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "agent_version", "queue"], name="autonomy_scope_key"
            )
        ]

    def __str__(self) -> str:
        version = self.agent_version or "(no version)"
        return f"{self.agent.name} {version} in {self.queue.slug}: {self.mode}"


class Certificate(models.Model):
    """A certified threshold as computed at promotion (immutable): what an `auto` relied on."""

    scope = models.ForeignKey(Scope, on_delete=models.PROTECT, related_name="certificates")
    created_at = models.DateTimeField()
    epoch = models.PositiveIntegerField()
    alpha = models.FloatField()
    delta = models.FloatField()
    theta = models.FloatField()
    n = models.PositiveIntegerField()
    k = models.PositiveIntegerField()
    upper_bound = models.FloatField()
    coverage = models.FloatField()
    sources = models.JSONField(default=list)


class PolicyDecision(models.Model):
    """One answer of POST /api/v1/decisions."""

    class Route(models.TextChoices):
        AUTO = "auto", "Auto"
        REVIEW = "review", "Review"

    scope = models.ForeignKey(Scope, on_delete=models.PROTECT, related_name="decisions")
    created_at = models.DateTimeField()
    route = models.CharField(max_length=6, choices=Route.choices)
    mode = models.CharField(max_length=12, choices=Mode.choices)
    confidence = models.FloatField()
    qa_sample = models.BooleanField(default=False)
    qa_rate = models.FloatField(null=True, blank=True)
    certificate = models.ForeignKey(
        Certificate, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The case created: for review, the case to decide; for a QA draw, the blind review.
    case = models.ForeignKey(
        "escalation.Escalation", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        indexes = [models.Index(fields=["scope", "route", "created_at"], name="policy_scope_idx")]


class ModeChange(models.Model):
    """The mode history of a scope (each change is also audited)."""

    scope = models.ForeignKey(Scope, on_delete=models.PROTECT, related_name="history")
    created_at = models.DateTimeField()
    from_mode = models.CharField(max_length=12, choices=Mode.choices)
    to_mode = models.CharField(max_length=12, choices=Mode.choices)
    reason = models.CharField(max_length=40)
    detail = models.CharField(max_length=500, blank=True)
    actor_name = models.CharField(max_length=150)
    certificate = models.ForeignKey(
        Certificate, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["created_at", "pk"]
