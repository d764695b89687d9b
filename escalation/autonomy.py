"""The learning loop: which cases an agent may decide alone, and taking that back.

Per scope (agent, agent version, queue) a mode: shadow and assisted send every case to people;
autonomous answers `auto` at or above the certified threshold θ and samples those actions for
blind QA review. Promotion needs a certificate (the manager console's fixed-sequence
Clopper–Pearson walk, escalation.calibration) computed from unbiased labels only — shadow
verdicts, assisted decisions and QA samples of the current epoch; a fall-back (CUSUM alarm,
the 28-day window test, a critical QA finding, a manager's kill switch) returns the scope to
assisted and starts a new epoch, so re-promotion needs labels collected after it.

Lock order, everywhere: the case row, then the scope row, then the calibration cell, then the
audit chain head (taken at commit on PostgreSQL). escalation.transitions.resolve follows it
for QA cases.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from escalation import audit, autonomy_math, calibration, outbox, stats_queries, transitions
from escalation.audit import Actor
from escalation.models import (
    CalibrationCell,
    Certificate,
    Decision,
    Escalation,
    LabelSource,
    Mode,
    ModeChange,
    PolicyDecision,
    Queue,
    Scope,
)
from escalation.models.autonomy import UNBIASED_SOURCES, Health
from escalation.transitions import TransitionError

WINDOW = timedelta(days=28)
SOURCE_OF_MODE = {
    Mode.SHADOW: LabelSource.SHADOW,
    Mode.ASSISTED: LabelSource.ASSISTED,
    # Below θ in autonomous mode the policy chose to send the case: not an unbiased label.
    Mode.AUTONOMOUS: LabelSource.ESCALATED,
}


# --- scopes -----------------------------------------------------------------------------------


def scope_for(agent, agent_version: str, queue: Queue, now: datetime) -> Scope:
    """The scope, created in assisted mode the first time (a new version starts afresh)."""
    found = Scope.objects.filter(agent=agent, agent_version=agent_version, queue=queue).first()
    if found is not None:
        return found
    try:
        with transaction.atomic():
            return Scope.objects.create(
                agent=agent,
                agent_version=agent_version,
                queue=queue,
                mode=Mode.ASSISTED,
                created_at=now,
                updated_at=now,
            )
    except IntegrityError:  # created meanwhile by a concurrent first decision
        return Scope.objects.get(agent=agent, agent_version=agent_version, queue=queue)


def qa_secret() -> bytes:
    """The server secret of the QA draw (derived from SECRET_KEY unless set)."""
    configured = getattr(settings, "HANDOFF_QA_SECRET", "")
    if configured:
        return configured.encode()
    return hashlib.sha256(b"handoff.qa-draw:" + settings.SECRET_KEY.encode()).digest()


def autonomous_volume(scope: Scope, now: datetime) -> int:
    return PolicyDecision.objects.filter(
        scope=scope, route=PolicyDecision.Route.AUTO, created_at__gte=now - WINDOW
    ).count()


def qa_rate(scope: Scope, now: datetime) -> float:
    return autonomy_math.qa_rate(autonomous_volume(scope, now), amber=scope.health == Health.AMBER)


# --- the policy decision ----------------------------------------------------------------------


def decide(*, agent, fields: dict[str, Any], key: str | None, now: datetime | None = None):
    """Answer POST /api/v1/decisions for a checked create body (`fields` as
    transitions.create takes them). Returns the PolicyDecision; its case is the case created
    (to review, or the blind QA review of an `auto`), if any."""
    now = now or timezone.now()
    actor = Actor.for_agent(agent)
    with transaction.atomic():
        scope = scope_for(agent, fields.get("agent_version", ""), fields["queue"], now)
        auto = (
            scope.mode == Mode.AUTONOMOUS
            and scope.theta is not None
            and fields["confidence"] >= scope.theta
        )
        rate = qa_rate(scope, now) if auto else None
        drawn = auto and autonomy_math.qa_draw(qa_secret(), key or str(uuid.uuid4()), rate)
        case = None
        if not auto or drawn:
            source = LabelSource.QA if auto else SOURCE_OF_MODE[scope.mode]
            case = transitions.create(
                actor=actor, agent=agent, now=now, label_source=source, scope=scope, **fields
            )
        made = PolicyDecision.objects.create(
            scope=scope,
            created_at=now,
            route=PolicyDecision.Route.AUTO if auto else PolicyDecision.Route.REVIEW,
            mode=scope.mode,
            confidence=fields["confidence"],
            qa_sample=bool(drawn),
            qa_rate=rate,
            certificate=scope.certificate if auto else None,
            case=case,
        )
        audit.record(
            actor=actor,
            verb="policy.decided",
            case=case,
            queue=scope.queue,
            now=now,
            data={
                "route": made.route,
                "mode": scope.mode,
                "agent_version": scope.agent_version,
                "confidence": made.confidence,
                "theta": scope.theta,
                "certificate": made.certificate_id,
                "qa_sample": made.qa_sample,
                "qa_rate": rate,
            },
        )
    return made


# --- certificates and mode changes ------------------------------------------------------------


def unbiased_counts(scope: Scope) -> list[dict]:
    """Calibration rows (one per grid point) of the scope's unbiased labels this epoch."""
    return stats_queries.calibration_counts(
        [scope.queue_id],
        scope.agent_id,
        scope.agent_version,
        sources=UNBIASED_SOURCES,
        epoch=scope.epoch,
    )


def evidence(scope: Scope) -> dict[str, Any]:
    """The certificate the scope would get now (calibration.summarize_grid's summary)."""
    queue = scope.queue
    return calibration.summarize_grid(
        unbiased_counts(scope), queue.autonomy_alpha, queue.autonomy_delta
    )


def biased_only(scope: Scope) -> bool:
    """Whether every label of this agent, version and queue is an escalated one."""
    cells = CalibrationCell.objects.filter(
        agent_id=scope.agent_id, agent_version=scope.agent_version, queue_id=scope.queue_id
    )
    return cells.exists() and not cells.filter(source__in=UNBIASED_SOURCES).exists()


def _lock_scope(scope_id) -> Scope:
    # NO KEY UPDATE: new cases point at the scope, and their foreign-key checks must not wait.
    scope = (
        Scope.objects.select_for_update(no_key=True)
        .select_related("queue", "agent")
        .filter(pk=scope_id)
    )
    found = scope.first()
    if found is None:
        raise TransitionError("no such scope", code="not_found")
    return found


def _change(scope: Scope, to_mode: str, *, actor: Actor, reason: str, detail: str, now, cert=None):
    """Record a mode change (history, audit event, managers told) of a locked scope."""
    ModeChange.objects.create(
        scope=scope,
        created_at=now,
        from_mode=scope.mode,
        to_mode=to_mode,
        reason=reason,
        detail=detail[:500],
        actor_name=actor.name,
        certificate=cert,
    )
    audit.record(
        actor=actor,
        verb=f"autonomy.{reason}",
        queue=scope.queue,
        now=now,
        data={
            "scope": scope.pk,
            "agent": scope.agent.name,
            "agent_version": scope.agent_version,
            "from": scope.mode,
            "to": to_mode,
            "certificate": cert.pk if cert else None,
            "detail": detail[:500],
        },
    )
    outbox.enqueue(
        "notify_autonomy",
        payload={"scope": scope.pk, "reason": reason, "to": to_mode, "detail": detail[:500]},
    )
    scope.mode = to_mode
    scope.updated_at = now


def promote(*, actor: Actor, scope_id, now: datetime | None = None) -> Certificate:
    """Make the scope autonomous on a fresh certificate, or refuse (nothing changes)."""
    now = now or timezone.now()
    with transaction.atomic():
        scope = _lock_scope(scope_id)
        if scope.mode == Mode.AUTONOMOUS:
            raise TransitionError("the scope is already autonomous", code="conflict")
        summary = evidence(scope)
        found = summary["certificate"]
        if not found["certified"]:
            raise TransitionError(
                "not certified: the unbiased labels of this epoch do not show an error rate "
                f"within α = {scope.queue.autonomy_alpha:g} at confidence "
                f"1 − δ = {1 - scope.queue.autonomy_delta:g}",
                code="not_certified",
            )
        cert = Certificate.objects.create(
            scope=scope,
            created_at=now,
            epoch=scope.epoch,
            alpha=found["alpha"],
            delta=found["delta"],
            theta=found["theta"],
            n=found["n"],
            k=found["k"],
            upper_bound=found["upper_bound"],
            coverage=found["coverage"],
            sources=list(UNBIASED_SOURCES),
        )
        _change(
            scope,
            Mode.AUTONOMOUS,
            actor=actor,
            reason="promoted",
            detail=f"θ = {cert.theta:g} on {cert.n} labels, {cert.k} errors",
            now=now,
            cert=cert,
        )
        scope.theta, scope.certificate = cert.theta, cert
        scope.health, scope.cusum = Health.GREEN, 0.0
        scope.save()
    return cert


def set_mode(*, actor: Actor, scope_id, mode: str, now: datetime | None = None) -> Scope:
    """A manager's choice of shadow or assisted (from autonomous: the kill switch)."""
    now = now or timezone.now()
    if mode not in (Mode.SHADOW, Mode.ASSISTED):
        raise TransitionError("a scope becomes autonomous only by promotion", code="invalid")
    with transaction.atomic():
        scope = _lock_scope(scope_id)
        if scope.mode == mode:
            return scope
        if scope.mode == Mode.AUTONOMOUS:
            _fall_back(scope, actor=actor, reason="kill_switch", detail="by a manager", now=now)
            if mode == Mode.ASSISTED:
                scope.save()
                return scope
        _change(scope, mode, actor=actor, reason="mode_set", detail="", now=now)
        scope.save()
    return scope


def _fall_back(scope: Scope, *, actor: Actor, reason: str, detail: str, now) -> None:
    """Back to assisted, in a new epoch (a locked scope; the caller saves it)."""
    _change(scope, Mode.ASSISTED, actor=actor, reason=f"fell_back.{reason}", detail=detail, now=now)
    scope.theta, scope.certificate = None, None
    scope.epoch += 1
    scope.cusum = 0.0
    scope.health = Health.RED


def qa_outcomes(scope: Scope) -> list[tuple[datetime, int]]:
    """(resolved at, 1 if judged wrong) of the QA samples under the current certificate, in
    the order they were judged."""
    if scope.certificate_id is None:
        return []
    rows = (
        PolicyDecision.objects.filter(
            scope=scope,
            certificate_id=scope.certificate_id,
            qa_sample=True,
            case__resolution__isnull=False,
        )
        .order_by("case__resolution__resolved_at", "case_id")
        .values_list("case__resolution__resolved_at", "case__resolution__decision")
    )
    return [(at, int(decision != Decision.APPROVE)) for at, decision in rows]


def judge_qa(case: Escalation, *, critical: bool, now: datetime) -> None:
    """After a QA case's resolution (inside resolve, its scope row locked first): update the
    CUSUM and the 28-day window test, and fall back when either turns red or the reviewer
    marked the action critical; amber doubles the QA rate and tells the managers."""
    scope = Scope.objects.select_related("queue", "agent").get(pk=case.scope_id)
    if scope.mode != Mode.AUTONOMOUS:
        return
    system = Actor.system()
    alpha, delta = scope.queue.autonomy_alpha, scope.queue.autonomy_delta
    outcomes = qa_outcomes(scope)
    errors = [e for _, e in outcomes]
    trace = autonomy_math.cusum_trace(errors, alpha)
    scope.cusum = trace[-1] if trace else 0.0
    recent = [e for at, e in outcomes if at >= now - WINDOW]
    health = autonomy_math.window_state(len(recent), sum(recent), alpha, delta)
    if health == Health.AMBER and len(recent) < calibration.n_min(alpha, delta):
        # Too few samples yet to re-certify even with no error: not evidence of anything.
        health = Health.GREEN
    fired = autonomy_math.cusum_fires(errors, alpha)
    if critical:
        _fall_back(scope, actor=system, reason="critical", detail=f"QA case {case.pk}", now=now)
    elif fired is not None:
        _fall_back(
            scope,
            actor=system,
            reason="cusum",
            detail=f"CUSUM {scope.cusum:g} reached its threshold at QA sample {fired}",
            now=now,
        )
    elif health == Health.RED:
        _fall_back(
            scope,
            actor=system,
            reason="window",
            detail=f"{sum(recent)} of {len(recent)} QA samples wrong in 28 days",
            now=now,
        )
    elif health != scope.health:
        if health == Health.AMBER:
            _change(
                scope,
                Mode.AUTONOMOUS,
                actor=system,
                reason="amber",
                detail=f"{sum(recent)} of {len(recent)} QA samples wrong: cannot re-certify",
                now=now,
            )
        scope.health = health
    scope.updated_at = now
    scope.save()


def promote_ready(now: datetime | None = None) -> int:
    """Promote every scope whose queue allows automatic promotion and that certifies now."""
    promoted = 0
    waiting = Scope.objects.filter(queue__auto_promote=True).exclude(mode=Mode.AUTONOMOUS)
    for scope_id in waiting.values_list("pk", flat=True):  # one row per scope
        try:
            promote(actor=Actor.system(), scope_id=scope_id, now=now)
        except TransitionError:
            continue
        promoted += 1
    return promoted
