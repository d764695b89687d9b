"""The manager's audit log: filtered events of their queues (keyset pages, newest first), one
case's timeline, a streamed CSV export, and the chain's verification state with "Verify now".

Reads go through escalation.audit_queries; the one write (asking for a verification) goes
through escalation.audit.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from accounts import permissions
from escalation import audit, audit_queries
from escalation.audit_queries import AuditFilters
from escalation.models import Decision
from escalation.web.manage_views import _require_manager


def _as_text(data, indent: int | None = None) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, indent=indent)


def _query_without(request: HttpRequest, *names: str) -> str:
    params = request.GET.copy()
    for name in names:
        params.pop(name, None)
    return params.urlencode()


@login_required
@require_GET
@vary_on_headers("HX-Request")
def audit_log(request: HttpRequest) -> HttpResponse:
    _require_manager(request)
    filters = AuditFilters.from_params(request.GET)
    before = audit_queries.parse_cursor(request.GET.get("before", ""))
    rows, next_before = audit_queries.page(
        audit_queries.filtered_events(request.user, filters), before
    )
    for row in rows:
        row.data_text = _as_text(row.data)
    context = {
        "events": rows,
        "filters": filters,
        "next_before": next_before,
        "is_first_page": before is None,
        "query": _query_without(request, "before"),
        "queues": permissions.managed_queues(request.user).order_by("name"),
        "verbs": audit_queries.KNOWN_VERBS,
        "decisions": Decision.choices,
        "verification": audit_queries.last_verification(),
        "pending": audit_queries.pending_verification(),
    }
    template = "escalation/manage_audit.html"
    if request.htmx and request.htmx.target == "audit-list":
        template += "#audit-list"
    return render(request, template, context)


@login_required
@require_GET
def case_timeline(request: HttpRequest, case_id) -> HttpResponse:
    _require_manager(request)
    case = audit_queries.case_for_timeline(request.user, case_id)
    events = list(audit_queries.timeline(case))
    for event in events:
        event.data_text = _as_text(event.data, indent=2)
    # One template: given a case, the page shows its timeline instead of the log.
    return render(request, "escalation/manage_audit.html", {"case": case, "events": events})


async def _stream_async(user, filters: AuditFilters) -> AsyncIterator[str]:
    """The ASGI server's copy of audit_queries.csv_rows: each batch is read in a thread, so the
    response streams instead of Django buffering a synchronous iterator whole."""
    events, _, slugs = await sync_to_async(audit_queries.export_batches)(user, filters)
    yield audit_queries.csv_header()
    after = 0
    while rows := await sync_to_async(audit_queries.export_batch)(events, after):
        yield "".join(audit_queries.csv_lines(rows, slugs))
        after = rows[-1][0]


@login_required
@require_GET
def export_csv(request: HttpRequest) -> StreamingHttpResponse:
    _require_manager(request)
    filters = AuditFilters.from_params(request.GET)
    if isinstance(request, ASGIRequest):
        content = _stream_async(request.user, filters)
    else:
        content = audit_queries.csv_rows(request.user, filters)
    response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.csv"'
    return response


@login_required
@require_POST
def verify_now(request: HttpRequest) -> HttpResponse:
    _require_manager(request)
    verification = audit.request_verification(user=request.user)
    verification.refresh_from_db()
    if verification.finished_at is None:
        messages.info(request, "Verification started; this page shows the result when it ends.")
    elif verification.ok:
        messages.success(request, f"The audit chain is intact ({verification.checked} events).")
    else:
        messages.error(request, f"The audit chain is broken: {verification.problem}.")
    return redirect(reverse("manage-audit"))
