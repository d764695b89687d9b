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

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import (
    Aggregate,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    FloatField,
    Func,
    IntegerField,
    Q,
    QuerySet,
    Value,
)
from django.db.models.functions import Cast, Floor, Least, TruncDate

from escalation import calibration
from escalation.models import Decision, Delivery, DeliveryStatus, Escalation, Resolution, Status
from escalation.models.cases import ACTIVE_STATUSES
from escalation.queries import URGENCY_ORDER

PERIODS = (7, 30, 90)
DEFAULT_PERIOD = 30


class Median(Aggregate):
    """PostgreSQL's exact median: percentile_cont(0.5) WITHIN GROUP (ORDER BY expr).

    Works on intervals as well as numbers (the interpolated middle of an even count)."""

    function = "percentile_cont"
    name = "Median"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    allow_distinct = False


PERCENTILES = (0.5, 0.9, 0.99)


class Percentiles(Aggregate):
    """PostgreSQL's exact continuous percentiles for several fractions in one pass, as Median:
        percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY expr)
    one float array per group (NULL when the group has no rows). `expr` must be a number
    (durations go through EpochSeconds)."""

    function = "percentile_cont"
    name = "Percentiles"
    template = (
        "%(function)s(ARRAY[%(fractions)s]::double precision[]) "
        "WITHIN GROUP (ORDER BY %(expressions)s)"
    )
    allow_distinct = False

    def __init__(self, expression, fractions=PERCENTILES, **extra):
        from django.contrib.postgres.fields import ArrayField  # PostgreSQL only

        super().__init__(
            expression,
            fractions=", ".join(repr(float(p)) for p in fractions),
            output_field=ArrayField(FloatField()),
            **extra,
        )


class EpochSeconds(Func):
    """PostgreSQL: an interval as seconds (double precision)."""

    template = "EXTRACT(EPOCH FROM %(expressions)s)::double precision"
    output_field = FloatField()


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
    """The SQLite fallback: ORDER BY duration LIMIT 2 OFFSET (n - 1) / 2, per reviewer."""
    timed = rows.filter(escalation__claimed_at__isnull=False).annotate(handling=_handling_time())
    return _percentiles_by_offset(timed, "handling", (0.5,))[0]


def _percentiles_by_offset(timed: QuerySet, alias: str, fractions) -> list[Any]:
    """percentile_cont without ordered-set aggregates (SQLite): for each fraction p over the n
    rows of `timed` (already filtered to non-null values of the annotation `alias`), the rows
    at ranks floor(h) and floor(h) + 1 for h = p * (n - 1),
        ... ORDER BY alias LIMIT 2 OFFSET floor(h)
    interpolated linearly: v[lo] + (h - lo) * (v[lo + 1] - v[lo]), PostgreSQL's definition.
    Works on durations (timedelta) and numbers; [None, ...] when there are no rows."""
    n = timed.count()
    if not n:
        return [None] * len(fractions)
    ordered = timed.order_by(alias).values_list(alias, flat=True)
    result = []
    for p in fractions:
        h = p * (n - 1)
        lo = math.floor(h)
        pair = list(ordered[lo : lo + 2])
        low = pair[0]
        high = pair[1] if len(pair) > 1 else low
        result.append(low + (high - low) * (h - lo) if h > lo else low)
    return result


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


# --- SLA dashboard --------------------------------------------------------------------------
#
# Over a period: the cases created in [since, until) in the selected queues. A case counts as
# breached when either target was missed (claim_breached_at or resolve_breached_at set). Time
# to claim runs from created_at to first_claimed_at (the first claim, kept through releases and
# transfers); time to resolve from created_at to resolution.resolved_at. Percentiles are
# PostgreSQL's percentile_cont (Percentiles above: one grouped query per dimension), or the
# ORDER BY ... OFFSET fallback per group on SQLite, which gives the same values.

SLA_NOW_SHOWN = 50

BREACHED = Q(claim_breached_at__isnull=False) | Q(resolve_breached_at__isnull=False)

# dimension -> the columns its rows are grouped by (the first is the key shown).
SLA_DIMENSIONS: dict[str, tuple[str, ...]] = {
    "queue": ("queue__slug", "queue__name"),
    "priority": ("priority", "priority_rank"),
    "reviewer": ("resolution__resolved_by__username",),
}


def _time_to_claim() -> ExpressionWrapper:
    return ExpressionWrapper(F("first_claimed_at") - F("created_at"), output_field=DurationField())


def _time_to_resolve() -> ExpressionWrapper:
    return ExpressionWrapper(
        F("resolution__resolved_at") - F("created_at"), output_field=DurationField()
    )


def _postgres() -> bool:
    """Ordered-set aggregates available (else the OFFSET fallback)."""
    return connection.vendor == "postgresql"


def sla_cases(queue_ids, since: datetime, until: datetime) -> QuerySet[Escalation]:
    """Cases in these queues created in [since, until)."""
    return Escalation.objects.filter(
        queue_id__in=queue_ids, created_at__gte=since, created_at__lt=until
    )


def _sla_aggregates(*, claim: bool, postgres: bool) -> dict[str, Any]:
    aggregates: dict[str, Any] = {
        "cases": Count("pk"),
        "breached": Count("pk", filter=BREACHED),
        "claimed": Count("pk", filter=Q(first_claimed_at__isnull=False)),
        "resolved": Count("pk", filter=Q(resolution__isnull=False)),
    }
    if postgres:
        if claim:
            aggregates["claim"] = Percentiles(
                EpochSeconds(_time_to_claim()), filter=Q(first_claimed_at__isnull=False)
            )
        aggregates["resolve"] = Percentiles(
            EpochSeconds(_time_to_resolve()), filter=Q(resolution__isnull=False)
        )
    return aggregates


def _seconds_list(values) -> list[float | None]:
    """Percentiles as seconds: [p50, p90, p99], each None when nothing was measured."""
    if not values:
        return [None] * len(PERCENTILES)
    return [
        None if v is None else (v.total_seconds() if isinstance(v, timedelta) else float(v))
        for v in values
    ]


def _finish_sla_row(row: dict[str, Any], cases: QuerySet[Escalation], claim: bool, postgres: bool):
    n = row["cases"]
    row["breach_rate"] = row["breached"] / n if n else None
    if not postgres:  # the fallback, one group at a time (never a walk over its rows)
        if claim:
            row["claim"] = _percentiles_by_offset(
                cases.filter(first_claimed_at__isnull=False).annotate(t=_time_to_claim()),
                "t",
                PERCENTILES,
            )
        row["resolve"] = _percentiles_by_offset(
            cases.filter(resolution__isnull=False).annotate(t=_time_to_resolve()),
            "t",
            PERCENTILES,
        )
    row["claim"] = _seconds_list(row.get("claim")) if claim else None
    row["resolve"] = _seconds_list(row.get("resolve"))
    return row


def sla_overall(queue_ids, since: datetime, until: datetime) -> dict[str, Any]:
    """All the period's cases: cases, breached, breach_rate (None without cases), claimed,
    resolved, claim and resolve = [p50, p90, p99] in seconds (None where not measured)."""
    postgres = _postgres()
    cases = sla_cases(queue_ids, since, until)
    row = cases.order_by().aggregate(**_sla_aggregates(claim=True, postgres=postgres))
    return _finish_sla_row(row, cases, True, postgres)


def sla_breakdown(queue_ids, since: datetime, until: datetime, dimension: str) -> list[dict]:
    """The same figures per queue (by slug), per priority (urgent first) or per reviewer (who
    resolved the case; resolved cases only, no time to claim), one grouped query. Each row
    carries `key` and `label`."""
    postgres = _postgres()
    columns = SLA_DIMENSIONS[dimension]
    claim = dimension != "reviewer"
    cases = sla_cases(queue_ids, since, until)
    if dimension == "reviewer":
        cases = cases.filter(resolution__isnull=False)
    rows = list(
        cases.order_by()
        .values(*columns)
        .annotate(**_sla_aggregates(claim=claim, postgres=postgres))
        .order_by(columns[-1] if dimension == "priority" else columns[0])
    )
    for row in rows:  # one row per group, never per case
        row["key"] = row[columns[0]]
        row["label"] = row[columns[1]] if dimension == "queue" else row["key"]
        if dimension == "priority":
            row["label"] = row["key"].capitalize()
        _finish_sla_row(row, cases.filter(**{columns[0]: row["key"]}), claim, postgres)
    return rows


def breach_rate_per_day(queue_ids, since: datetime, until: datetime) -> dict[date, dict]:
    """{day (UTC) of creation: {cases, breached, breach_rate}} for days with cases."""
    rows = (
        sla_cases(queue_ids, since, until)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .order_by()
        .values("day")
        .annotate(cases=Count("pk"), breached=Count("pk", filter=BREACHED))
    )
    return {
        row["day"]: {
            "cases": row["cases"],
            "breached": row["breached"],
            "breach_rate": row["breached"] / row["cases"],
        }
        for row in rows
    }


def sla_now(queue_ids, now: datetime, limit: int = SLA_NOW_SHOWN) -> dict[str, Any]:
    """Active cases whose clock is past its target (breached) or past 75% of it (at risk), as
    the inbox's sla filter counts them: the two counts and the `limit` most urgent cases."""
    active = Escalation.objects.filter(status__in=ACTIVE_STATUSES, queue_id__in=queue_ids)
    late = active.filter(Q(next_due_at__lte=now) | Q(next_risk_at__lte=now))
    counts = late.order_by().aggregate(
        breached=Count("pk", filter=Q(next_due_at__lte=now)),
        at_risk=Count("pk", filter=Q(next_risk_at__lte=now, next_due_at__gt=now)),
    )
    cases = list(
        late.select_related("queue", "agent", "claimed_by").order_by(*URGENCY_ORDER)[:limit]
    )
    return {**counts, "cases": cases}
