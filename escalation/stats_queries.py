"""Reads behind the manager statistics pages (/manage/reviewers/, /manage/agents/, /manage/sla/).

Every figure over a period comes from the rollups in escalation.models.stats (see
escalation.rollups): SQL sums over a few thousand day rows, never a scan of the cases. A period
is whole UTC days: the `days` days ending today (`since` and `until` name its first and last
day; their time of day does not matter). Percentiles are percentile_cont's, read off the
duration histograms (escalation.rollups.percentiles: exact for small sets, otherwise within
9.1%). What is happening now (sla_now, dead deliveries) reads the live tables through partial
indexes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Min, Q, QuerySet, Sum

from escalation import calibration, rollups
from escalation.models import (
    CalibrationCell,
    CaseDayStat,
    Decision,
    Delivery,
    DeliveryStatus,
    DurationDayStat,
    Escalation,
    Queue,
    ResolutionDayStat,
)
from escalation.models.autonomy import UNBIASED_SOURCES, LabelSource
from escalation.models.cases import ACTIVE_STATUSES, PRIORITY_RANK
from escalation.models.stats import Metric
from escalation.queries import URGENCY_ORDER

PERIODS = (7, 30, 90)
DEFAULT_PERIOD = 30
PERCENTILES = (0.5, 0.9, 0.99)


def _day_range(since: datetime, until: datetime) -> tuple[date, date]:
    return since.astimezone(UTC).date(), until.astimezone(UTC).date()


def _in_period(rows: QuerySet, queue_ids, since: datetime, until: datetime) -> QuerySet:
    first, last = _day_range(since, until)
    return rows.filter(queue_id__in=queue_ids, day__gte=first, day__lte=last)


def _sums(rows: QuerySet, **columns: str) -> QuerySet:
    """rows.annotate(name=Sum(column) ...) under names that may be the columns' own (an
    aggregate may not shadow a field): summed as total_<name>, renamed by _renamed()."""
    return rows.annotate(**{f"total_{name}": Sum(column) for name, column in columns.items()})


def _renamed(row: dict) -> dict:
    return {k.removeprefix("total_"): v for k, v in row.items()}


def _histograms(metric: str, queue_ids, since, until, *keys: str) -> list[dict]:
    """One metric's histogram over the period, one row per (keys..., bucket)."""
    rows = (
        _in_period(DurationDayStat.objects.filter(metric=metric), queue_ids, since, until)
        .order_by()
        .values(*keys, "bucket")
        .annotate(total_n=Sum("n"), lo=Min("min_s"), hi=Max("max_s"))
    )
    return [_renamed(row) for row in rows]


def duration_percentiles(
    metric: str, queue_ids, since: datetime, until: datetime, key: str | None, fractions
) -> dict:
    """{key value: [percentiles in seconds]} of one duration metric over the period, grouped
    by `key` (queue_id, priority, reviewer_id) or, with key None, all together ({None: ...})."""
    rows = _histograms(metric, queue_ids, since, until, *([key] if key else []))
    return rollups.merged_percentiles(rows, key, fractions)


# --- reviewers ------------------------------------------------------------------------------


def reviewer_stats(queue_ids, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Per reviewer who resolved a case here in the period: resolved, approved / modified /
    rejected counts and shares, agreement (share approved as is) and median handling time
    (claim to resolution, a timedelta; None when no resolution has a claim time). Busiest
    first."""
    decided = {
        name: Sum("resolved", filter=Q(decision=decision))
        for name, decision in (
            ("approved", Decision.APPROVE),
            ("modified", Decision.MODIFY),
            ("rejected", Decision.REJECT),
        )
    }
    rows = [
        _renamed(row)
        for row in _sums(
            _in_period(ResolutionDayStat.objects, queue_ids, since, until)
            .order_by()
            .values("reviewer_id", "reviewer__username"),
            resolved="resolved",
        )
        .annotate(**decided)
        .order_by("-total_resolved", "reviewer__username")
    ]
    medians = duration_percentiles(Metric.HANDLING, queue_ids, since, until, "reviewer_id", (0.5,))
    for row in rows:  # one row per reviewer, never per case
        row["resolved_by_id"] = row.pop("reviewer_id")
        row["username"] = row.pop("reviewer__username")
        n = row["resolved"]
        for name in ("approved", "modified", "rejected"):
            row[name] = row[name] or 0
            row[f"{name}_share"] = row[name] / n if n else None
        row["agreement"] = row["approved_share"]
        median = medians.get(row["resolved_by_id"], [None])[0]
        row["median_handling"] = None if median is None else timedelta(seconds=median)
    return rows


# --- agents ------------------------------------------------------------------------------------


def agent_cases(queue_ids) -> QuerySet[Escalation]:
    return Escalation.objects.filter(queue_id__in=queue_ids)


def agents_with_cases(queue_ids) -> list[dict[str, Any]]:
    """[{agent_id, agent__name, cases}] of every agent with a case in these queues (any time),
    by name."""
    rows = _sums(
        CaseDayStat.objects.filter(queue_id__in=queue_ids)
        .order_by()
        .values("agent_id", "agent__name"),
        cases="cases",
    )
    return [_renamed(row) for row in rows.order_by("agent__name")]


def _agent_days(queue_ids, since, until, agent_ids) -> QuerySet[CaseDayStat]:
    rows = _in_period(CaseDayStat.objects, queue_ids, since, until)
    return rows if agent_ids is None else rows.filter(agent_id__in=agent_ids)


def volume_per_day(
    queue_ids, since: datetime, until: datetime, agent_ids=None
) -> dict[int, dict[date, int]]:
    """{agent_id: {day (UTC): cases created}} over the period; days without cases absent."""
    result: dict[int, dict[date, int]] = {}
    rows = (
        _agent_days(queue_ids, since, until, agent_ids)
        .order_by()
        .values("agent_id", "day")
        .annotate(n=Sum("cases"))
    )
    for row in rows:
        result.setdefault(row["agent_id"], {})[row["day"]] = row["n"]
    return result


def confidence_histogram(
    queue_ids, since: datetime, until: datetime, agent_ids=None
) -> dict[int, list[int]]:
    """{agent_id: [cases in band 0, ..., band 9]} for cases created in the period."""
    result: dict[int, list[int]] = {}
    rows = (
        _agent_days(queue_ids, since, until, agent_ids)
        .order_by()
        .values("agent_id", "band")
        .annotate(n=Sum("cases"))
    )
    for row in rows:
        result.setdefault(row["agent_id"], [0] * calibration.BANDS)[row["band"]] += row["n"]
    return result


def dead_deliveries(queue_ids, agent_ids=None) -> dict[int, int]:
    """{agent_id: webhook deliveries dead now} for cases in these queues (not limited to the
    period: a dead delivery waits for a person until redelivered)."""
    dead = Delivery.objects.filter(escalation__queue_id__in=queue_ids, status=DeliveryStatus.DEAD)
    if agent_ids is not None:
        dead = dead.filter(agent_id__in=agent_ids)
    return dict(dead.order_by().values_list("agent_id").annotate(n=Count("pk")))


# The label-source filter of an agent's calibration (the manager's page and the API): every
# label, the unbiased ones (what a learning-loop certificate counts), or one source.
LABEL_FILTERS = {
    "": ("all labels", None),
    "unbiased": ("unbiased: shadow, assisted and QA", UNBIASED_SOURCES),
    **{source.value: (source.label, (source.value,)) for source in LabelSource},
}
LABEL_FILTER_ERROR = f"one of {', '.join(k for k in LABEL_FILTERS if k)}, or empty"


def calibration_counts(
    queue_ids,
    agent_id: int,
    agent_version: str | None = None,
    *,
    sources=None,
    epoch: int | None = None,
) -> list[dict]:
    """This agent's labels in these queues (None: all), as escalation.queries.calibration_counts
    gives them (one row per grid point), summed from the calibration cells (at most 101 rows
    per agent, version, queue, label source and epoch). By default every label ("all resolved
    cases"); `sources` keeps those label sources, `epoch` one scope epoch."""
    cells = CalibrationCell.objects.filter(agent_id=agent_id)
    if queue_ids is not None:  # None: every queue
        cells = cells.filter(queue_id__in=queue_ids)
    if agent_version is not None:
        cells = cells.filter(agent_version=agent_version)
    if sources is not None:
        cells = cells.filter(source__in=sources)
    if epoch is not None:
        cells = cells.filter(epoch=epoch)
    summed = ("n", "approved", "modified", "rejected", "sum_c", "sum_c2", "sum_c_approved")
    rows = [
        _renamed(row)
        for row in _sums(cells.order_by().values("g"), **{name: name for name in summed})
        .annotate(total_min_c=Min("min_c"))
        .order_by("g")
    ]
    for row in rows:
        row["errors"] = row["modified"] + row["rejected"]
    return rows


# --- SLA dashboard --------------------------------------------------------------------------
#
# Over a period: the cases created in it, in the selected queues. A case counts as breached
# when either target was missed. Time to claim runs from created_at to first_claimed_at (the
# first claim, kept through releases and transfers); time to resolve from created_at to the
# resolution. Per reviewer: the cases each reviewer resolved in the period (a reviewer is known
# only once a case is resolved), their breaches and time to resolve.

SLA_NOW_SHOWN = 50
SLA_DIMENSIONS = ("queue", "priority", "reviewer")


def _sla_row(counts: dict, claim: list | None, resolve: list | None, with_claim: bool) -> dict:
    n = counts.get("cases") or 0
    breached = counts.get("breached") or 0
    none = [None] * len(PERCENTILES)
    return {
        "cases": n,
        "breached": breached,
        "claimed": (counts.get("claimed") or 0) if with_claim else None,
        "resolved": counts.get("resolved") or 0,
        "breach_rate": breached / n if n else None,
        "claim": (claim or none) if with_claim else None,
        "resolve": resolve or none,
    }


CASE_FIELDS = ("cases", "breached", "claimed", "resolved")


def sla_figures(queue_ids, since: datetime, until: datetime) -> dict[str, Any]:
    """The period's figures: "all" (one row), "queue" (by slug), "priority" (urgent first) and
    "reviewer" (by name; resolved cases only, no time to claim) rows, each with cases,
    breached, breach_rate (None without cases), claimed, resolved, and claim / resolve =
    [p50, p90, p99] in seconds (None where not measured); rows carry `key` and `label`.
    One grouped read per table and metric: the queue and priority figures are merged from
    the same (queue, priority) rows."""
    counts = [
        _renamed(row)
        for row in _sums(
            _in_period(CaseDayStat.objects, queue_ids, since, until)
            .order_by()
            .values("queue_id", "priority"),
            cases="cases",
            breached="breached",
            claimed="claimed",
            resolved="resolved",
        )
    ]
    claim = _histograms(Metric.CLAIM, queue_ids, since, until, "queue_id", "priority")
    resolve = _histograms(Metric.RESOLVE, queue_ids, since, until, "queue_id", "priority")
    queues = {
        q["pk"]: q for q in Queue.objects.filter(pk__in=queue_ids).values("pk", "slug", "name")
    }
    figures: dict[str, Any] = {}
    for dimension, key in (("all", None), ("queue", "queue_id"), ("priority", "priority")):
        totals: dict = {}
        for row in counts:  # one row per queue and priority
            group = totals.setdefault(row[key] if key else None, dict.fromkeys(CASE_FIELDS, 0))
            for field in CASE_FIELDS:
                group[field] += row[field]
        claims = rollups.merged_percentiles(claim, key, PERCENTILES)
        resolves = rollups.merged_percentiles(resolve, key, PERCENTILES)
        rows = []
        for value, total in totals.items():
            row = _sla_row(total, claims.get(value), resolves.get(value), True)
            if dimension == "queue":
                row.update(key=queues[value]["slug"], label=queues[value]["name"])
            elif dimension == "priority":
                row.update(key=value, label=value.capitalize())
            rows.append(row)
        if dimension == "all":
            figures["all"] = rows[0] if rows else _sla_row({}, None, None, True)
        elif dimension == "priority":
            figures["priority"] = sorted(rows, key=lambda r: PRIORITY_RANK.get(r["key"], 9))
        else:
            figures["queue"] = sorted(rows, key=lambda r: r["key"])
    figures["reviewer"] = _sla_per_reviewer(queue_ids, since, until)
    return figures


def _sla_per_reviewer(queue_ids, since: datetime, until: datetime) -> list[dict]:
    groups = _sums(
        _in_period(ResolutionDayStat.objects, queue_ids, since, until)
        .order_by()
        .values("reviewer_id", "reviewer__username"),
        cases="resolved",
        breached="breached",
        resolved="resolved",
    )
    resolve = rollups.merged_percentiles(
        _histograms(Metric.REVIEWER_RESOLVE, queue_ids, since, until, "reviewer_id"),
        "reviewer_id",
        PERCENTILES,
    )
    rows = []
    for group in map(_renamed, groups):  # one row per reviewer
        row = _sla_row(group, None, resolve.get(group["reviewer_id"]), False)
        row.update(key=group["reviewer__username"], label=group["reviewer__username"])
        rows.append(row)
    return sorted(rows, key=lambda r: r["key"])


def breach_rate_per_day(queue_ids, since: datetime, until: datetime) -> dict[date, dict]:
    """{day (UTC) of creation: {cases, breached, breach_rate}} for days with cases."""
    rows = map(
        _renamed,
        _sums(
            _in_period(CaseDayStat.objects, queue_ids, since, until).order_by().values("day"),
            cases="cases",
            breached="breached",
        ),
    )
    return {
        row["day"]: {
            "cases": row["cases"],
            "breached": row["breached"],
            "breach_rate": row["breached"] / row["cases"],
        }
        for row in rows
        if row["cases"]
    }


def sla_now(queue_ids, now: datetime, limit: int = SLA_NOW_SHOWN) -> dict[str, Any]:
    """Active cases whose clock is past its target (breached) or past 75% of it (at risk), as
    the inbox's sla filter counts them: the two counts and the `limit` most urgent cases."""
    active = Escalation.objects.filter(status__in=ACTIVE_STATUSES, queue_id__in=queue_ids)
    late = active.filter(Q(next_due_at__lte=now) | Q(next_risk_at__lte=now))
    # Two counts rather than one FILTERed scan of `late`: each is a range of an index
    # (breached: an index-only scan of case_queue_due_idx however many there are).
    counts = {
        "breached": active.filter(next_due_at__lte=now).count(),
        "at_risk": active.filter(next_risk_at__lte=now, next_due_at__gt=now).count(),
    }
    cases = list(
        late.select_related("queue", "agent", "claimed_by").order_by(*URGENCY_ORDER)[:limit]
    )
    return {**counts, "cases": cases}
