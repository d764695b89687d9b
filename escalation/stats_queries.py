"""Reads behind the manager statistics pages (/manage/reviewers/, /manage/agents/).

Every figure is an SQL aggregate (GROUP BY with Count / conditional Count / a percentile): no
Python loop ever walks the cases or resolutions themselves, only the handful of grouped rows
the database returns (one per reviewer, per agent and day, per agent and band...).

Median handling time: handling time is Resolution.resolved_at - Escalation.claimed_at.
Escalation.claimed_at is cleared on release and transfer, so for a resolved case it holds the
claim the resolution came from (resolve needs a live claim), which is the handling that counts.
- PostgreSQL: one grouped query,
      percentile_cont(0.5) WITHIN GROUP (ORDER BY resolution.resolved_at - case.claimed_at)
  (an interval in, an interval out), via the `Median` aggregate below.
- SQLite (no ordered-set aggregates): per reviewer, the middle row(s) of the same durations,
      ... ORDER BY duration LIMIT 2 OFFSET (n - 1) / 2
  averaged when n is even (LIMIT 1 when odd): the same value percentile_cont gives.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import (
    Aggregate,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    FloatField,
    IntegerField,
    Q,
    QuerySet,
    Value,
)
from django.db.models.functions import Cast, Floor, Least, TruncDate

from escalation import calibration
from escalation.models import Decision, Delivery, DeliveryStatus, Escalation, Resolution, Status

PERIODS = (7, 30, 90)
DEFAULT_PERIOD = 30


class Median(Aggregate):
    """PostgreSQL's exact median: percentile_cont(0.5) WITHIN GROUP (ORDER BY expr).

    Works on intervals as well as numbers (the interpolated middle of an even count)."""

    function = "percentile_cont"
    name = "Median"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    allow_distinct = False


def _handling_time() -> ExpressionWrapper:
    return ExpressionWrapper(
        F("resolved_at") - F("escalation__claimed_at"), output_field=DurationField()
    )


def resolutions(queue_ids, since: datetime, until: datetime) -> QuerySet[Resolution]:
    """Resolutions of cases in these queues resolved in [since, until)."""
    return Resolution.objects.filter(
        escalation__queue_id__in=queue_ids, resolved_at__gte=since, resolved_at__lt=until
    )


def reviewer_stats(queue_ids, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Per reviewer who resolved a case here in the period: resolved, approved / modified /
    rejected counts and shares, agreement (share approved as is) and median handling time
    (a timedelta, None when no resolution has a claim time). Busiest first."""
    base = resolutions(queue_ids, since, until)
    aggregates: dict[str, Any] = {
        "resolved": Count("pk"),
        "approved": Count("pk", filter=Q(decision=Decision.APPROVE)),
        "modified": Count("pk", filter=Q(decision=Decision.MODIFY)),
        "rejected": Count("pk", filter=Q(decision=Decision.REJECT)),
    }
    postgres = connection.vendor == "postgresql"
    if postgres:
        aggregates["median_handling"] = Median(
            _handling_time(),
            filter=Q(escalation__claimed_at__isnull=False),
            output_field=DurationField(),
        )
    rows = list(
        base.order_by()
        .values("resolved_by_id", "resolved_by__username")
        .annotate(**aggregates)
        .order_by("-resolved", "resolved_by__username")
    )
    for row in rows:  # one row per reviewer, never per case
        row["username"] = row.pop("resolved_by__username")
        n = row["resolved"]
        for name in ("approved", "modified", "rejected"):
            row[f"{name}_share"] = row[name] / n if n else None
        row["agreement"] = row["approved_share"]
        if not postgres:
            row["median_handling"] = _median_by_offset(
                base.filter(resolved_by_id=row["resolved_by_id"])
            )
    return rows


def _median_by_offset(rows: QuerySet[Resolution]) -> timedelta | None:
    """The SQLite fallback: ORDER BY duration LIMIT 1 or 2 OFFSET (n - 1) / 2, per reviewer."""
    timed = rows.filter(escalation__claimed_at__isnull=False).annotate(handling=_handling_time())
    n = timed.count()
    if not n:
        return None
    middle = list(
        timed.order_by("handling").values_list("handling", flat=True)[
            (n - 1) // 2 : (n - 1) // 2 + (1 if n % 2 else 2)
        ]
    )
    return sum(middle, timedelta()) / len(middle)


# --- agents ------------------------------------------------------------------------------------


def agent_cases(queue_ids) -> QuerySet[Escalation]:
    return Escalation.objects.filter(queue_id__in=queue_ids)


def agents_with_cases(queue_ids) -> list[dict[str, Any]]:
    """[{id, name, cases}] of every agent with a case in these queues (any time), by name."""
    return list(
        agent_cases(queue_ids)
        .order_by()
        .values("agent_id", "agent__name")
        .annotate(cases=Count("pk"))
        .order_by("agent__name")
    )


def volume_per_day(
    queue_ids, since: datetime, until: datetime, agent_ids=None
) -> dict[int, dict[date, int]]:
    """{agent_id: {day (UTC): cases created}} over [since, until); days without cases absent."""
    cases = agent_cases(queue_ids).filter(created_at__gte=since, created_at__lt=until)
    if agent_ids is not None:
        cases = cases.filter(agent_id__in=agent_ids)
    result: dict[int, dict[date, int]] = {}
    for row in (
        cases.annotate(day=TruncDate("created_at"))
        .order_by()
        .values("agent_id", "day")
        .annotate(n=Count("pk"))
    ):
        result.setdefault(row["agent_id"], {})[row["day"]] = row["n"]
    return result


def _band():
    """Confidence band 0..9 in SQL: floor((c + EPS) * 10), 1.0 folded into band 9 — the same
    as calibration.band_index."""
    return Least(
        Cast(
            Floor(
                (F("confidence") + Value(calibration.EPS, output_field=FloatField()))
                * Value(float(calibration.BANDS), output_field=FloatField())
            ),
            IntegerField(),
        ),
        Value(calibration.BANDS - 1, output_field=IntegerField()),
    )


def confidence_histogram(
    queue_ids, since: datetime, until: datetime, agent_ids=None
) -> dict[int, list[int]]:
    """{agent_id: [cases in band 0, ..., band 9]} for cases created in [since, until)."""
    cases = agent_cases(queue_ids).filter(created_at__gte=since, created_at__lt=until)
    if agent_ids is not None:
        cases = cases.filter(agent_id__in=agent_ids)
    result: dict[int, list[int]] = {}
    for row in (
        cases.annotate(band=_band()).order_by().values("agent_id", "band").annotate(n=Count("pk"))
    ):
        result.setdefault(row["agent_id"], [0] * calibration.BANDS)[row["band"]] += row["n"]
    return result


def dead_deliveries(queue_ids, agent_ids=None) -> dict[int, int]:
    """{agent_id: webhook deliveries dead now} for cases in these queues (not limited to the
    period: a dead delivery waits for a person until redelivered)."""
    dead = Delivery.objects.filter(escalation__queue_id__in=queue_ids, status=DeliveryStatus.DEAD)
    if agent_ids is not None:
        dead = dead.filter(agent_id__in=agent_ids)
    return dict(dead.order_by().values_list("agent_id").annotate(n=Count("pk")))


def calibration_cases(queue_ids, agent_id: int) -> QuerySet[Escalation]:
    """The label source: every resolved case of this agent in these queues (all time)."""
    return agent_cases(queue_ids).filter(agent_id=agent_id, status=Status.RESOLVED)
