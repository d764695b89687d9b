"""Manager statistics: /manage/reviewers/, /manage/agents/ and one agent's calibration
(/manage/agents/<name>/calibration, HTML or JSON).

Managers only (reviewers and outsiders get 403), limited to the queues they manage
(permissions.managed_queues). Query string: `days` = 7 | 30 | 90 (default 30), `queue` = a
managed queue's slug (anything else counts nothing), and on the agent pages `alpha` / `delta`
(the error budget and 1 - confidence of the certified threshold, parsed exactly as the agent
API's /api/v1/calibration does). All reads are SQL aggregates in escalation.stats_queries and
escalation.queries.calibration_counts.

Calibration is computed on every resolved case of the agent in the selected queues (the label
source "all resolved cases"), not only the period's: the certificate needs all the evidence.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from accounts import permissions
from escalation import calibration, charts, rollups, stats_queries
from escalation.api.errors import error_response
from escalation.api.views import CALIBRATION_NOTE, _parse_level
from escalation.models import Agent, CalibrationCell
from escalation.web.manage_views import _require_manager

PAGE_NOTE = (
    "Escalated cases are the ones the agent chose to send, so these figures speak for those only."
)


# --- query-string parsing ---------------------------------------------------------------------


def _days(request: HttpRequest) -> int:
    raw = request.GET.get("days", "")
    return (
        int(raw) if raw in {str(d) for d in stats_queries.PERIODS} else stats_queries.DEFAULT_PERIOD
    )


def _period(request: HttpRequest) -> tuple[int, datetime, datetime]:
    """The `days` whole UTC days ending today (the rollups count per day)."""
    days = _days(request)
    until = timezone.now()
    return days, until - timedelta(days=days - 1), until


def _queues(request: HttpRequest) -> tuple[list[dict], str, list[int]]:
    """(managed queues as {slug, name}, selected slug or "", ids of the queues counted)."""
    managed = list(
        permissions.managed_queues(request.user).order_by("slug").values("pk", "slug", "name")
    )
    slug = request.GET.get("queue", "").strip()
    ids = [q["pk"] for q in managed if not slug or q["slug"] == slug]
    return managed, slug, ids


def _levels(request: HttpRequest) -> tuple[float, float, dict[str, str]]:
    """alpha and delta (the defaults where absent), and any errors."""
    errors: dict[str, str] = {}
    alpha = _parse_level(request.GET, "alpha", calibration.DEFAULT_ALPHA, errors)
    delta = _parse_level(request.GET, "delta", calibration.DEFAULT_DELTA, errors)
    return alpha, delta, errors


def _wants_json(request: HttpRequest) -> bool:
    return request.GET.get("format") == "json" or "application/json" in request.headers.get(
        "Accept", ""
    )


# --- display helpers ------------------------------------------------------------------------


def _duration_text(value: timedelta | None) -> str:
    if value is None:
        return "—"
    seconds = value.total_seconds()
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60)}s"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60)}m"
    return f"{int(seconds // 86400)}d {int(seconds % 86400 // 3600)}h"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None, places: int = 4) -> str:
    return "—" if value is None else f"{value:.{places}f}"


def _filters(request, days, managed, slug, **extra) -> dict[str, Any]:
    return {
        "days": days,
        "periods": stats_queries.PERIODS,
        "queues": managed,
        "queue": slug,
        "as_of": rollups.as_of(),
        "refresh_seconds": settings.HANDOFF_STATS_REFRESH_SECONDS,
        **extra,
    }


# --- reviewers ------------------------------------------------------------------------------


@login_required
@require_GET
def reviewers(request: HttpRequest) -> HttpResponse:
    """Per reviewer: throughput, median handling time, decision mix, agreement with the agent."""
    _require_manager(request)
    days, since, until = _period(request)
    managed, slug, queue_ids = _queues(request)
    rows = stats_queries.reviewer_stats(queue_ids, since, until)
    for row in rows:
        row["median_text"] = _duration_text(row["median_handling"])
        row["median_seconds"] = (
            None if row["median_handling"] is None else row["median_handling"].total_seconds()
        )
        for name in ("approved", "modified", "rejected"):
            row[f"{name}_pct"] = _pct(row[f"{name}_share"])
        row["agreement_pct"] = _pct(row["agreement"])
    chart = (
        charts.bar_chart(
            [(r["username"], r["resolved"]) for r in rows],
            f"Cases resolved per reviewer, last {days} days",
            label_every=1,
        )
        if rows
        else None
    )
    return render(
        request,
        "escalation/manage_reviewers.html",
        {"rows": rows, "chart": chart, **_filters(request, days, managed, slug)},
    )


# --- agents ---------------------------------------------------------------------------------


def _certificate_view(cert: dict[str, Any]) -> dict[str, Any]:
    """Display strings for a certificate dict (from calibration summaries)."""
    best = cert.get("best") or {}
    return {
        "certified": cert["certified"],
        "theta": _num(cert["theta"], 2) if cert["certified"] else None,
        "threshold_t": _num(cert["threshold_t"], 2),
        "n": cert["n"],
        "k": cert["k"],
        "coverage": _pct(cert["coverage"]),
        "upper_bound": _num(cert["upper_bound"], 6),
        "p_value": _num(cert["p_value"], 6),
        "n_min": cert["n_min"],
        "needed": cert["needed_error_free"],
        "best_t": _num(best.get("t"), 2) if best else None,
    }


def _label_filter(request: HttpRequest, errors: dict[str, str]) -> tuple[str, Any, str | None]:
    """(the `source` parameter, the label sources it keeps or None, the `version` or None)."""
    source = request.GET.get("source", "")
    if source not in stats_queries.LABEL_FILTERS:
        errors["source"] = stats_queries.LABEL_FILTER_ERROR
        source = ""
    version = request.GET.get("version") or None  # empty: every version
    return source, stats_queries.LABEL_FILTERS[source][1], version


def _summary(
    queue_ids: list[int], agent_id: int, alpha: float, delta: float, sources=None, version=None
) -> dict[str, Any]:
    counts = stats_queries.calibration_counts(queue_ids, agent_id, version, sources=sources)
    return calibration.summarize_grid(counts, alpha, delta)


def _days_axis(since: datetime, until: datetime) -> list:
    first = since.astimezone(UTC).date()
    last = until.astimezone(UTC).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


@login_required
@require_GET
def agents(request: HttpRequest) -> HttpResponse:
    """Per agent: volume per day, confidence histogram, dead deliveries, calibration summary."""
    _require_manager(request)
    days, since, until = _period(request)
    managed, slug, queue_ids = _queues(request)
    alpha, delta, errors = _levels(request)
    if errors:
        alpha, delta = calibration.DEFAULT_ALPHA, calibration.DEFAULT_DELTA
    listed = stats_queries.agents_with_cases(queue_ids)
    ids = [a["agent_id"] for a in listed]
    volume = stats_queries.volume_per_day(queue_ids, since, until, ids)
    histogram = stats_queries.confidence_histogram(queue_ids, since, until, ids)
    dead = stats_queries.dead_deliveries(queue_ids, ids)
    axis = _days_axis(since, until)
    # Imported here: manage_autonomy builds on this module's display helpers.
    from escalation.web.manage_autonomy import BIASED_ONLY_NOTE, UNBIASED_NOTE, scope_rows

    scopes = scope_rows(queue_ids, until)
    rows = []
    for a in listed:  # one row per agent
        agent_id, name = a["agent_id"], a["agent__name"]
        per_day = volume.get(agent_id, {})
        bands = histogram.get(agent_id, [0] * calibration.BANDS)
        summary = _summary(queue_ids, agent_id, alpha, delta)
        rows.append(
            {
                "name": name,
                "cases": a["cases"],
                "period_cases": sum(per_day.values()),
                "busiest": max(per_day.values(), default=0),
                "volume_chart": charts.bar_chart(
                    [(day.strftime("%m-%d"), per_day.get(day, 0)) for day in axis],
                    f"Cases per day from {name}, last {days} days",
                ),
                "histogram": [
                    {"label": f"{i / 10:.1f}–{(i + 1) / 10:.1f}", "n": n}
                    for i, n in enumerate(bands)
                ],
                "histogram_chart": charts.histogram(bands, f"Confidence of {name}'s cases"),
                "dead": dead.get(agent_id, 0),
                "resolved": summary["total"],
                "ece": _num(summary["ece"]),
                "brier": _num(summary["brier"]),
                "certificate": _certificate_view(summary["certificate"]),
                "scopes": scopes.pop(agent_id, []),
            }
        )
    return render(
        request,
        "escalation/manage_agents.html",
        {
            "rows": rows,
            # Scopes of agents the day rollups have not counted yet (they fold periodically).
            "scopes_only": [{"name": s[0]["agent"], "scopes": s} for s in scopes.values()],
            "next": request.get_full_path(),
            "autonomy_note": UNBIASED_NOTE,
            "biased_note": BIASED_ONLY_NOTE,
            "note": PAGE_NOTE,
            "alpha": alpha,
            "delta": delta,
            "errors": errors,
            "raw_alpha": request.GET.get("alpha", ""),
            "raw_delta": request.GET.get("delta", ""),
            **_filters(request, days, managed, slug),
        },
        status=400 if errors else 200,
    )


@login_required
@require_GET
def agent_calibration(request: HttpRequest, name: str) -> HttpResponse:
    """One agent's calibration in the manager's queues (or one of them): HTML, or JSON when
    asked with Accept: application/json or format=json."""
    _require_manager(request)
    wants_json = _wants_json(request)
    managed, slug, queue_ids = _queues(request)
    all_ids = [q["pk"] for q in managed]
    agent = Agent.objects.filter(name=name).first()
    if agent is None or not stats_queries.agent_cases(all_ids).filter(agent=agent).exists():
        if wants_json:
            return _vary(error_response(404, "not_found", "no such agent in your queues"))
        raise Http404("no such agent in your queues")
    alpha, delta, errors = _levels(request)
    source, sources, version = _label_filter(request, errors)
    if wants_json:
        if errors:
            message = (
                "source is not a label source"
                if "source" in errors
                else "alpha and delta must be numbers in (0, 0.5]"
            )
            response = error_response(400, "invalid", message, fields=errors)
        else:
            summary = _summary(queue_ids, agent.pk, alpha, delta, sources, version)
            response = JsonResponse(
                {
                    "agent": agent.name,
                    "queue": slug or None,
                    "source": source or None,
                    "agent_version": version,
                    "alpha": alpha,
                    "delta": delta,
                    "note": CALIBRATION_NOTE,
                    **summary,
                }
            )
        return _vary(response)

    days, since, until = _period(request)
    shown_alpha, shown_delta = (
        (calibration.DEFAULT_ALPHA, calibration.DEFAULT_DELTA) if errors else (alpha, delta)
    )
    summary = _summary(queue_ids, agent.pk, shown_alpha, shown_delta, sources, version)
    bands = [
        {
            **b,
            "approved_pct": _pct(b["approved_share"]),
            "modified_pct": _pct(b["modified_share"]),
            "rejected_pct": _pct(b["rejected_share"]),
            "mean_text": _num(b["mean_confidence"], 3),
        }
        for b in summary["bands"]
    ]
    points = [
        {**p, "mean_text": _num(p["mean_confidence"], 3), "accuracy_pct": _pct(p["accuracy"])}
        for p in summary["reliability"]
    ]
    response = render(
        request,
        "escalation/manage_agent.html",
        {
            "agent_name": agent.name,
            "note": PAGE_NOTE,
            "total": summary["total"],
            "bands": bands,
            "points": points,
            "ece": _num(summary["ece"]),
            "brier": _num(summary["brier"]),
            "certificate": _certificate_view(summary["certificate"]),
            "reliability_chart": charts.reliability_diagram(
                summary["reliability"], f"Reliability of {agent.name}"
            ),
            "alpha": shown_alpha,
            "delta": shown_delta,
            "errors": errors,
            "raw_alpha": request.GET.get("alpha", ""),
            "raw_delta": request.GET.get("delta", ""),
            "source": source,
            "label_filters": [
                (key, title) for key, (title, _) in stats_queries.LABEL_FILTERS.items()
            ],
            "version": version,
            "versions": CalibrationCell.objects.filter(agent=agent)
            .order_by("agent_version")
            .values_list("agent_version", flat=True)
            .distinct(),
            **_filters(request, days, managed, slug),
        },
        status=400 if errors else 200,
    )
    return _vary(response)


def _vary(response: HttpResponse) -> HttpResponse:
    patch_vary_headers(response, ("Accept",))
    return response


# --- SLA ------------------------------------------------------------------------------------

SLA_DIMENSION_TITLES = (("queue", "Queue"), ("priority", "Priority"), ("reviewer", "Reviewer"))


def _unit(seconds: list[float]) -> tuple[float, str]:
    """The time unit a chart of these durations reads best in: (seconds per unit, name)."""
    top = max(seconds, default=0)
    if top >= 2 * 3600:
        return 3600.0, "hours"
    if top >= 120:
        return 60.0, "minutes"
    return 1.0, "seconds"


def _percentile_chart(rows: list[dict], which: str, title: str) -> Any:
    """p50 / p90 / p99 side by side for each group (three bars a group), or None when nothing
    was measured."""
    measured = [v for r in rows for v in (r[which] or []) if v is not None]
    if not measured:
        return None
    per, unit = _unit(measured)
    points = [
        (f"{r['label']} · {name}", round((v or 0) / per, 1))
        for r in rows
        for name, v in zip(("p50", "p90", "p99"), r[which], strict=True)
    ]
    return charts.bar_chart(points, f"{title} ({unit})", label_every=3)


def _sla_row_view(row: dict[str, Any]) -> dict[str, Any]:
    def times(values):
        if values is None:
            return None
        return [_duration_text(None if v is None else timedelta(seconds=v)) for v in values]

    return {
        **row,
        "breach_pct": _pct(row["breach_rate"]),
        "claim_text": times(row["claim"]),
        "resolve_text": times(row["resolve"]),
    }


@login_required
@require_GET
def sla(request: HttpRequest) -> HttpResponse:
    """Breached and at-risk cases now; over the period (cases created in it) breach rate and
    p50 / p90 / p99 time to claim and to resolve per queue, priority and reviewer, and the
    breach rate per day."""
    _require_manager(request)
    days, since, until = _period(request)
    managed, slug, queue_ids = _queues(request)
    current = stats_queries.sla_now(queue_ids, until)
    figures = stats_queries.sla_figures(queue_ids, since, until)
    overall = _sla_row_view(figures["all"])
    sections = []
    for dimension, heading in SLA_DIMENSION_TITLES:
        rows = [_sla_row_view(r) for r in figures[dimension]]
        per = heading.lower()
        sections.append(
            {
                "dimension": dimension,
                "heading": heading,
                "rows": rows,
                "claim": dimension != "reviewer",
                "breach_chart": charts.bar_chart(
                    [(r["label"], round(r["breach_rate"] * 100, 1)) for r in rows],
                    f"Breach rate per {per}, % of cases created in the last {days} days",
                    label_every=1,
                )
                if rows
                else None,
                "claim_chart": _percentile_chart(rows, "claim", f"Time to claim per {per}")
                if dimension != "reviewer"
                else None,
                "resolve_chart": _percentile_chart(rows, "resolve", f"Time to resolve per {per}"),
            }
        )
    per_day = stats_queries.breach_rate_per_day(queue_ids, since, until)
    day_rows = [
        {"day": day, **figures, "breach_pct": _pct(figures["breach_rate"])}
        for day, figures in sorted(per_day.items())
    ]
    daily_chart = (
        charts.bar_chart(
            [
                (
                    day.strftime("%m-%d"),
                    round(per_day[day]["breach_rate"] * 100, 1) if day in per_day else 0,
                )
                for day in _days_axis(since, until)
            ],
            f"Breach rate per day of creation, %, last {days} days",
        )
        if per_day
        else None
    )
    return render(
        request,
        "escalation/manage_sla.html",
        {
            "now": until,
            "breached_now": current["breached"],
            "at_risk_now": current["at_risk"],
            "urgent_cases": current["cases"],
            "shown_limit": stats_queries.SLA_NOW_SHOWN,
            "overall": overall,
            "sections": sections,
            "day_rows": day_rows,
            "daily_chart": daily_chart,
            **_filters(request, days, managed, slug),
        },
    )
