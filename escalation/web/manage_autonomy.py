"""The learning loop in the manager console: the Autonomy table of each agent on
/manage/agents/ (built here), one scope's page /manage/agents/<name>/scopes/<id>/ (error
budget, CUSUM trace, QA outcomes, mode history, certificate and current evidence) and its
actions: POST …/promote and POST …/mode with `mode` = shadow | assisted (from autonomous,
the kill switch).

Managers of the scope's queue only: reviewers get 403, a manager of another team 404. Reads
are in escalation.autonomy_queries; every change goes through escalation.autonomy, which
checks it, records the mode history and writes the audit event. A POST answers with a message
and a redirect to `next` when it is a path of this site, else to the scope page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from escalation import autonomy, autonomy_queries, charts
from escalation.audit import Actor
from escalation.models import Mode, Scope
from escalation.transitions import TransitionError
from escalation.web.manage_stats import _certificate_view, _num, _pct
from escalation.web.manage_views import _require_manager

UNBIASED_NOTE = (
    "A certificate is computed from unbiased labels only — shadow verdicts, assisted decisions "
    "and QA samples of the current epoch — never from the cases the agent chose to escalate."
)
BIASED_ONLY_NOTE = (
    "Escalated cases are all there is: every label of this scope is a case the agent chose to "
    "send, which cannot certify anything. Shadow or assisted mode collects unbiased labels."
)
REASONS = {
    "promoted": "Promoted",
    "mode_set": "Set by a manager",
    "amber": "Amber: the QA evidence cannot re-certify",
    "fell_back.kill_switch": "Kill switch",
    "fell_back.cusum": "Fell back: CUSUM alarm",
    "fell_back.window": "Fell back: 28-day window test",
    "fell_back.critical": "Fell back: critical QA finding",
}


# --- display ----------------------------------------------------------------------------------


def _label(scope: Scope) -> str:
    return f"{scope.agent.name} {scope.agent_version or '(no version)'} in {scope.queue.name}"


def _actions(scope: Scope) -> list[dict[str, str]]:
    """The buttons: Promote unless autonomous, then each other mode; from autonomous, back to
    assisted is the kill switch."""
    url = {
        name: reverse(f"manage-scope-{name}", args=[scope.agent.name, scope.pk])
        for name in ("promote", "mode")
    }
    found = []
    if scope.mode != Mode.AUTONOMOUS:
        found.append({"label": "Promote", "url": url["promote"], "mode": ""})
    if scope.mode != Mode.SHADOW:
        found.append({"label": "Shadow", "url": url["mode"], "mode": Mode.SHADOW})
    if scope.mode != Mode.ASSISTED:
        label = "Kill switch" if scope.mode == Mode.AUTONOMOUS else "Assisted"
        found.append({"label": label, "url": url["mode"], "mode": Mode.ASSISTED})
    return found


def _change_view(change) -> dict[str, Any] | None:
    if change is None:
        return None
    return {
        "reason": REASONS.get(change.reason, change.reason),
        "from_mode": change.get_from_mode_display(),
        "to_mode": change.get_to_mode_display(),
        "detail": change.detail,
        "at": change.created_at,
        "by": change.actor_name,
        "certificate": change.certificate_id,
    }


def _scope_view(row: dict[str, Any]) -> dict[str, Any]:
    scope = row["scope"]
    return {
        "id": scope.pk,
        "agent": scope.agent.name,
        "version": scope.agent_version or "(no version)",
        "queue": scope.queue.name,
        "mode": scope.mode,
        "mode_text": scope.get_mode_display(),
        "theta": _num(scope.theta, 2) if scope.mode == Mode.AUTONOMOUS else None,
        "health": scope.health,
        "health_text": scope.get_health_display(),
        "qa_rate": _pct(row["qa_rate"]),
        "cusum": f"{scope.cusum:g}",
        "epoch": scope.epoch,
        "volume": row["volume"],
        "last_change": _change_view(row["last_change"]),
        "biased_only": row["biased_only"],
        "url": reverse("manage-scope", args=[scope.agent.name, scope.pk]),
        "actions": _actions(scope),
    }


def _issued_view(cert) -> dict[str, Any] | None:
    """The certificate in force (a Certificate row), as shown."""
    if cert is None:
        return None
    return {
        "theta": _num(cert.theta, 2),
        "n": cert.n,
        "k": cert.k,
        "upper_bound": _num(cert.upper_bound, 6),
        "coverage": _pct(cert.coverage),
        "alpha": cert.alpha,
        "delta": cert.delta,
        "epoch": cert.epoch,
        "at": cert.created_at,
    }


def scope_rows(queue_ids, now: datetime) -> dict[int, list[dict[str, Any]]]:
    """{agent id: its scopes in these queues, ready to show} for the agents page."""
    by_agent: dict[int, list[dict[str, Any]]] = {}
    for row in autonomy_queries.scope_table(queue_ids, now):
        by_agent.setdefault(row["scope"].agent_id, []).append(_scope_view(row))
    return by_agent


def _count(value: float | None) -> str:
    return _num(value, 2)


def _budget_view(found: dict[str, Any], alpha: float) -> dict[str, Any]:
    """The budget figures as text, and the CUSUM and QA outcome charts with their table."""
    figures, trace, outcomes = found["figures"], found["trace"], found["outcomes"]
    errors = [e for _, e in outcomes]
    cumulative = [sum(errors[: i + 1]) for i in range(len(errors))]
    samples = [
        {"n": i + 1, "at": at, "wrong": e, "cusum": f"{trace[i]:g}" if trace else "—"}
        for i, (at, e) in enumerate(outcomes)
    ][-autonomy_queries.SAMPLES_SHOWN :]
    view: dict[str, Any] = {
        **found,
        "samples": samples[::-1],
        "samples_hidden": max(0, len(outcomes) - len(samples)),
        "errors_total": sum(errors),
        "confidence": _pct(1 - found["delta"]),
        "cusum_chart": None,
        "outcomes_chart": None,
    }
    if figures is not None:
        view |= {
            "budget": _count(figures["budget"]),
            "error_rate": _pct(figures["error_rate"]),
            "estimated": _count(figures["estimated_errors"]),
            "estimated_low": _count(figures["estimated_errors_low"]),
            "estimated_high": _count(figures["estimated_errors_high"]),
            "burn_rate": _num(figures["burn_rate"], 2),
            "overrun": figures["burn_rate"] is not None and figures["burn_rate"] > 1,
        }
    if trace:
        view["cusum_chart"] = charts.line_chart(
            [("CUSUM C", trace, charts.BAR)],
            "CUSUM after each QA sample under the current certificate",
            threshold=found["h"],
            threshold_label=f"h = {found['h']}",
        )
        view["outcomes_chart"] = charts.line_chart(
            [
                ("errors found", cumulative, charts.ERROR),
                ("allowed (α × samples)", [alpha * (i + 1) for i in range(len(errors))], "#777"),
            ],
            "QA samples judged wrong, cumulative, against the budget",
        )
    return view


# --- pages and actions ------------------------------------------------------------------------


def _scope_or_404(request: HttpRequest, name: str, scope_id: int) -> Scope:
    _require_manager(request)
    found = autonomy_queries.scope_for(request.user, name, scope_id)
    if found is None:
        raise Http404("no such scope in your queues")
    return found


@login_required
@require_GET
def scope_page(request: HttpRequest, name: str, scope_id: int) -> HttpResponse:
    scope = _scope_or_404(request, name, scope_id)
    now = timezone.now()
    summary = autonomy.evidence(scope)
    return render(
        request,
        "escalation/manage_scope.html",
        {
            "s": _scope_view(autonomy_queries.scope_row(scope, now)),
            "next": request.get_full_path(),
            "note": UNBIASED_NOTE,
            "biased_note": BIASED_ONLY_NOTE,
            "budget": _budget_view(
                autonomy_queries.error_budget(scope, now), scope.queue.autonomy_alpha
            ),
            "certificate": _issued_view(scope.certificate),
            "evidence": _certificate_view(summary["certificate"]),
            "labels": summary["total"],
            "history": [_change_view(c) for c in autonomy_queries.history(scope)],
            "history_limit": autonomy_queries.HISTORY_SHOWN,
        },
    )


def _back(request: HttpRequest, scope: Scope) -> HttpResponse:
    target = request.POST.get("next", "")
    same_site = target.startswith("/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts=None
    )
    return redirect(
        target if same_site else reverse("manage-scope", args=[scope.agent.name, scope.pk])
    )


@login_required
@require_POST
def promote(request: HttpRequest, name: str, scope_id: int) -> HttpResponse:
    scope = _scope_or_404(request, name, scope_id)
    try:
        cert = autonomy.promote(actor=Actor.for_user(request.user), scope_id=scope.pk)
    except TransitionError as exc:
        messages.error(request, f"{_label(scope)}: {exc.message}")
    else:
        messages.success(
            request,
            f"{_label(scope)} now acts alone at confidence ≥ θ = {cert.theta:g} "
            f"(certified on {cert.n} unbiased labels, {cert.k} errors).",
        )
    return _back(request, scope)


@login_required
@require_POST
def set_mode(request: HttpRequest, name: str, scope_id: int) -> HttpResponse:
    scope = _scope_or_404(request, name, scope_id)
    mode = request.POST.get("mode", "")
    try:
        changed = autonomy.set_mode(
            actor=Actor.for_user(request.user), scope_id=scope.pk, mode=mode
        )
    except TransitionError as exc:
        messages.error(request, f"{_label(scope)}: {exc.message}")
    else:
        if scope.mode == Mode.AUTONOMOUS:
            messages.success(
                request,
                f"Kill switch: {_label(scope)} no longer acts alone and is {changed.mode} now "
                f"(epoch {changed.epoch}: re-promotion needs labels collected from now on).",
            )
        else:
            messages.success(request, f"{_label(scope)} is {changed.mode} now.")
    return _back(request, scope)
