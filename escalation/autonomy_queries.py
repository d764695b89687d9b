"""Reads of the learning loop for the manager console: the scopes of some queues with their
28-day figures, and one scope's error budget, CUSUM trace and history. Nothing here writes;
escalation.autonomy changes scopes.

The table reads a fixed number of queries however many scopes (agent versions accumulate):
the 28-day volumes and the label sources are grouped reads, and only autonomous scopes (few)
ask escalation.autonomy for their QA rate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, OuterRef, Q, Subquery

from accounts import permissions
from escalation import autonomy, autonomy_math
from escalation.models import CalibrationCell, Mode, ModeChange, PolicyDecision, Scope
from escalation.models.autonomy import UNBIASED_SOURCES

HISTORY_SHOWN = 200
SAMPLES_SHOWN = 50


def scope_for(user, agent_name: str, scope_id: int) -> Scope | None:
    """The scope, if it is this agent's and in a queue this person manages."""
    return (
        Scope.objects.select_related("agent", "queue", "certificate")
        .filter(pk=scope_id, agent__name=agent_name, queue__in=permissions.managed_queues(user))
        .first()
    )


def autonomous_volumes(scope_ids, now: datetime) -> dict[int, int]:
    """{scope id: `auto` answers in the last 28 days} (autonomy.autonomous_volume, grouped)."""
    rows = (
        PolicyDecision.objects.filter(
            scope_id__in=scope_ids,
            route=PolicyDecision.Route.AUTO,
            created_at__gte=now - autonomy.WINDOW,
        )
        .order_by()
        .values("scope_id")
        .annotate(n=Count("pk"))
    )
    return {row["scope_id"]: row["n"] for row in rows}


def biased_only_keys(queue_ids) -> set[tuple[int, str, int]]:
    """(agent id, version, queue id) whose labels are all escalated ones (autonomy.biased_only,
    grouped)."""
    rows = (
        CalibrationCell.objects.filter(queue_id__in=queue_ids)
        .order_by()
        .values("agent_id", "agent_version", "queue_id")
        .annotate(unbiased=Count("pk", filter=Q(source__in=UNBIASED_SOURCES)))
        .filter(unbiased=0)
    )
    return {(r["agent_id"], r["agent_version"], r["queue_id"]) for r in rows}  # as key(scope)


def scope_table(queue_ids, now: datetime) -> list[dict[str, Any]]:
    """Every scope in these queues (by agent name, queue, version) with its 28-day autonomous
    volume, QA rate (autonomous only), last mode change and whether its labels are all
    escalated ones."""
    newest = ModeChange.objects.filter(scope=OuterRef("pk")).order_by("-created_at", "-pk")
    scopes = list(
        Scope.objects.filter(queue_id__in=queue_ids)
        .select_related("agent", "queue")
        .annotate(last_change_id=Subquery(newest.values("pk")[:1]))
        .order_by("agent__name", "queue__slug", "agent_version", "pk")
    )
    volumes = autonomous_volumes([s.pk for s in scopes], now)
    changes = ModeChange.objects.in_bulk([s.last_change_id for s in scopes if s.last_change_id])
    biased = biased_only_keys(queue_ids)
    return [
        _row(s, volumes.get(s.pk, 0), changes.get(s.last_change_id), key(s) in biased, now)
        for s in scopes
    ]


def scope_row(scope: Scope, now: datetime) -> dict[str, Any]:
    """One scope's row of scope_table."""
    last = ModeChange.objects.filter(scope=scope).order_by("-created_at", "-pk").first()
    volume = autonomy.autonomous_volume(scope, now)
    return _row(scope, volume, last, autonomy.biased_only(scope), now)


def key(scope: Scope) -> tuple[int, str, int]:
    return (scope.agent_id, scope.agent_version, scope.queue_id)


def _row(scope: Scope, volume: int, last_change, biased_only: bool, now) -> dict[str, Any]:
    return {
        "scope": scope,
        "volume": volume,
        "qa_rate": autonomy.qa_rate(scope, now) if scope.mode == Mode.AUTONOMOUS else None,
        "last_change": last_change,
        "biased_only": biased_only,
    }


def error_budget(scope: Scope, now: datetime) -> dict[str, Any]:
    """The scope's 28-day error budget (autonomy_math.budget on the `auto` answers of the last
    28 days and the QA samples judged in them under the current certificate), the CUSUM trace
    over every QA outcome under that certificate, with its threshold h, and the outcomes."""
    alpha, delta = scope.queue.autonomy_alpha, scope.queue.autonomy_delta
    outcomes = autonomy.qa_outcomes(scope)
    errors = [e for _, e in outcomes]
    recent = [e for at, e in outcomes if at >= now - autonomy.WINDOW]
    volume = autonomy.autonomous_volume(scope, now)
    try:
        figures = autonomy_math.budget(volume, len(recent), sum(recent), alpha, delta)
        w, h = autonomy_math.cusum_constants(alpha)
    except ValueError:  # a queue budget outside what the monitors accept: nothing to show
        figures, w, h = None, None, None
    trace = autonomy_math.cusum_trace(errors, alpha) if h is not None else []
    return {
        "alpha": alpha,
        "delta": delta,
        "volume": volume,
        "qa_n": len(recent),
        "qa_k": sum(recent),
        "figures": figures,
        "w": w,
        "h": h,
        "outcomes": outcomes,
        "trace": trace,
    }


def history(scope: Scope, limit: int = HISTORY_SHOWN) -> list[ModeChange]:
    """The scope's mode changes, newest first."""
    return list(
        ModeChange.objects.filter(scope=scope)
        .select_related("certificate")
        .order_by("-created_at", "-pk")[:limit]
    )
