"""The reviewer UI: inbox, next case, case page and its actions.

Views are short: they read through escalation.queries, change state only through
escalation.transitions, and look cases up with get_case_for(), which 404s outside the person's
queues. One URL serves a page or, for htmx, its fragment (Vary: HX-Request); htmx POSTs answer
with a fragment or a redirect header, plain POSTs redirect.
"""

from __future__ import annotations

import base64
import functools
import json
import uuid
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRedirect

from accounts import permissions
from escalation import queries, transitions
from escalation.audit import Actor
from escalation.models import AuditEvent, Escalation, LabelSource, Status
from escalation.timeparse import parse_utc
from escalation.transitions import TransitionError
from escalation.web.forms import DecisionForm, InboxFilterForm, TransferForm

BLIND_SOURCES = (LabelSource.SHADOW, LabelSource.QA)

# --- helpers ---------------------------------------------------------------------------------


def get_case_for(user, case_id) -> Escalation:
    """The case if it is in one of the person's queues; 404 otherwise (no leak by id)."""
    case = (
        Escalation.objects.select_related("queue", "agent", "claimed_by")
        .filter(pk=case_id, queue__in=permissions.visible_queues(user))
        .first()
    )
    if case is None:
        raise Http404("no such case")
    return case


def _redirect(request: HttpRequest, url: str) -> HttpResponse:
    """htmx follows HX-Redirect; a plain form POST follows a 303."""
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)


def _case_url(case_id) -> str:
    return reverse("case", args=[case_id])


def _encode_cursor(keyset: tuple | None) -> str:
    if keyset is None:
        return ""
    due, rank, created, case_id = keyset
    raw = json.dumps([due.isoformat() if due else None, rank, created.isoformat(), str(case_id)])
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(text: str) -> tuple | None:
    if not text:
        return None
    # A mangled cursor starts from the top instead of failing.
    try:
        due, rank, created, case_id = json.loads(base64.urlsafe_b64decode(text.encode()))
        keyset = (parse_utc(due), int(rank), parse_utc(created), uuid.UUID(case_id))
    except (ValueError, TypeError, AttributeError):
        return None
    if keyset[0] is None or keyset[2] is None:
        return None
    return keyset


def _actor(request: HttpRequest) -> Actor:
    return Actor.for_user(request.user)


def _refused(request: HttpRequest, case_id, error: TransitionError) -> HttpResponse:
    """A refused action: say why, in the page, and show the case as it is now."""
    messages.error(request, error.message)
    return _redirect(request, _case_url(case_id))


# --- inbox -----------------------------------------------------------------------------------


@login_required
@require_GET
@vary_on_headers("HX-Request")
def inbox(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    queue_ids = permissions.visible_queue_ids(request.user)
    version = queries.inbox_version(queue_ids, now)
    if request.htmx and request.GET.get("since") == version:
        return HttpResponse(status=204)  # nothing changed: htmx leaves the list alone
    filter_form = InboxFilterForm(request.GET)
    filters = filter_form.filters()
    page_queues = queries.inbox_queues(queue_ids, filters)
    cases = queries.inbox_cases(page_queues, filters, request.user, now)
    after = _decode_cursor(request.GET.get("after", ""))
    rows, next_keyset = queries.inbox_page(cases, page_queues, after)
    params = request.GET.copy()
    params.pop("after", None)
    params.pop("since", None)
    context = {
        "cases": rows,
        "now": now,
        "version": version,
        "filter_form_html": _filter_form_html(_filter_query(request.GET)),
        "counts": queries.queue_counts(queue_ids, now),
        "next_cursor": _encode_cursor(next_keyset),
        "query": params.urlencode(),
        "is_first_page": not request.GET.get("after"),
        "no_queues": not queue_ids,
    }
    template = "escalation/inbox.html"
    if request.htmx and request.htmx.target == "case-list":
        template += "#case-list"
    return render(request, template, context)


def _filter_query(params) -> str:
    """The filter form's own values of a query string, in a fixed order."""
    return urlencode(
        [(name, value) for name in InboxFilterForm.base_fields for value in params.getlist(name)]
    )


@functools.lru_cache(maxsize=256)
def _filter_form_html(query: str) -> str:
    """The filter form as rendered for these values. Its HTML depends on nothing else, and
    rendering a form's widgets through templates was about a sixth of an inbox page's CPU."""
    return InboxFilterForm(QueryDict(query)).as_div()


@login_required
@require_POST
def next_case(request: HttpRequest) -> HttpResponse:
    case = transitions.claim_next(actor=_actor(request))
    if case is None:
        messages.info(request, "There is no open case in your queues right now.")
        return _redirect(request, reverse("inbox"))
    return _redirect(request, _case_url(case.pk))


# --- case page -------------------------------------------------------------------------------


def _case_context(
    request: HttpRequest, case: Escalation, decision_form=None, transfer_form=None
) -> dict:
    now = timezone.now()
    is_holder = case.status == Status.CLAIMED and case.claimed_by_id == request.user.pk
    lease_live = is_holder and case.lease_is_live(now)
    if decision_form is None and lease_live:
        decision_form = DecisionForm(
            queue=case.queue, initial={"claim_token": case.claim_token, "decision": "approve"}
        )
    # Offered only to those who may use it: anyone on an open case, the holder, a manager.
    may_transfer = (
        case.status == Status.OPEN
        or lease_live
        or (
            case.status == Status.CLAIMED
            and permissions.can_manage_queue(request.user, case.queue_id)
        )
    )
    if transfer_form is None and may_transfer:
        transfer_form = TransferForm(
            current=case.queue, initial={"claim_token": case.claim_token if is_holder else None}
        )
    resolution = getattr(case, "resolution", None) if case.status == Status.RESOLVED else None
    # Shadow and QA cases are decided blind: the proposal shows once the decision is made.
    blind = case.label_source if case.label_source in BLIND_SOURCES and not resolution else ""
    verdict_needed = (
        resolution is not None
        and case.label_source == LabelSource.SHADOW
        and not resolution.verdict
        and (
            resolution.resolved_by_id == request.user.pk
            or permissions.can_manage_queue(request.user, case.queue_id)
        )
    )
    return {
        "case": case,
        "now": now,
        "is_holder": is_holder,
        "lease_live": lease_live,
        "lease_lost": is_holder and not lease_live,
        "can_manage": permissions.can_manage_queue(request.user, case.queue_id),
        "decision_form": decision_form if lease_live else None,
        "transfer_form": transfer_form if may_transfer else None,
        "resolution": resolution,
        "blind": blind,
        "verdict_needed": verdict_needed,
        "updates": list(case.context_updates.all()),
        "history": AuditEvent.objects.filter(escalation=case).order_by("seq"),
    }


@login_required
@require_GET
@vary_on_headers("HX-Request")
def case_page(request: HttpRequest, case_id) -> HttpResponse:
    case = get_case_for(request.user, case_id)
    return render(request, "escalation/case.html", _case_context(request, case))


@login_required
@require_GET
@vary_on_headers("HX-Request")
def case_updates(request: HttpRequest, case_id) -> HttpResponse:
    """Context updates, polled by the case page; 204 while nothing new has arrived."""
    case = get_case_for(request.user, case_id)
    updates = list(case.context_updates.all())
    if request.htmx and request.GET.get("seen") == str(len(updates)):
        return HttpResponse(status=204)
    return render(request, "escalation/case.html#updates", {"case": case, "updates": updates})


@login_required
@require_POST
def claim(request: HttpRequest, case_id) -> HttpResponse:
    case = get_case_for(request.user, case_id)
    try:
        transitions.claim(actor=_actor(request), case_id=case.pk)
    except TransitionError as error:
        return _refused(request, case.pk, error)
    return _redirect(request, _case_url(case.pk))


@login_required
@require_POST
def release(request: HttpRequest, case_id) -> HttpResponse:
    case = get_case_for(request.user, case_id)
    try:
        transitions.release(
            actor=_actor(request),
            case_id=case.pk,
            claim_token=request.POST.get("claim_token") or None,
        )
    except TransitionError as error:
        return _refused(request, case.pk, error)
    messages.success(request, "Released: the case is open again.")
    return _redirect(request, reverse("inbox"))


@login_required
@require_POST
def heartbeat(request: HttpRequest, case_id) -> HttpResponse:
    """Keeps the lease alive while the case page is open; never revives an expired one."""
    case = get_case_for(request.user, case_id)
    try:
        case = transitions.renew_lease(
            actor=_actor(request),
            case_id=case.pk,
            claim_token=request.POST.get("claim_token") or None,
        )
    except TransitionError as error:
        return render(
            request,
            "escalation/case.html#lease",
            {"case": case, "lease_error": error.message, "now": timezone.now()},
        )
    return render(
        request,
        "escalation/case.html#lease",
        {"case": case, "lease_live": True, "now": timezone.now()},
    )


@login_required
@require_POST
def decide(request: HttpRequest, case_id) -> HttpResponse:
    case = get_case_for(request.user, case_id)
    form = DecisionForm(request.POST, queue=case.queue)
    if not form.is_valid() and "claim_token" in form.errors:
        # Only a tampered page sends a token that is not a UUID: same answer as a stale one.
        return _refused(
            request,
            case.pk,
            TransitionError("you do not hold the claim on this case", code="not_claim_holder"),
        )
    if form.is_valid():
        data = form.cleaned_data
        try:
            transitions.resolve(
                actor=_actor(request),
                case_id=case.pk,
                claim_token=data["claim_token"],
                decision=data["decision"],
                final_action=data["final_action"],
                labels=form.label_values(),
                note=data["note"],
                critical=data["critical"] and case.label_source == LabelSource.QA,
            )
        except TransitionError as error:
            if error.code != "invalid":
                return _refused(request, case.pk, error)
            form.add_domain_errors(error.fields)
        else:
            messages.success(request, f"Decided: {data['decision']}.")
            if case.label_source == LabelSource.SHADOW:  # now the verdict on the proposal
                return _redirect(request, _case_url(case.pk))
            return _open_next(request)
    context = _case_context(request, case, decision_form=form)
    if request.htmx:
        return render(request, "escalation/case.html#decision", context, status=422)
    return render(request, "escalation/case.html", context, status=422)


def _open_next(request: HttpRequest) -> HttpResponse:
    """After a decision the next case opens (the inbox when there is none)."""
    upcoming = transitions.claim_next(actor=_actor(request))
    if upcoming is None:
        messages.info(request, "That was the last open case in your queues.")
        return _redirect(request, reverse("inbox"))
    return _redirect(request, _case_url(upcoming.pk))


@login_required
@require_POST
def verdict(request: HttpRequest, case_id) -> HttpResponse:
    """A shadow case's verdict on the agent's proposal, after the blind decision."""
    case = get_case_for(request.user, case_id)
    try:
        transitions.record_verdict(
            actor=_actor(request), case_id=case.pk, verdict=request.POST.get("verdict", "")
        )
    except TransitionError as error:
        return _refused(request, case.pk, error)
    messages.success(request, "Verdict recorded.")
    return _open_next(request)


@login_required
@require_POST
def transfer(request: HttpRequest, case_id) -> HttpResponse:
    case = get_case_for(request.user, case_id)
    form = TransferForm(request.POST, current=case.queue)
    if not form.is_valid():
        messages.error(request, "Choose a queue to transfer the case to.")
        return _redirect(request, _case_url(case.pk))
    try:
        transitions.transfer(
            actor=_actor(request),
            case_id=case.pk,
            to_queue=form.cleaned_data["queue"],
            claim_token=form.cleaned_data.get("claim_token"),
            reason=form.cleaned_data["reason"],
        )
    except TransitionError as error:
        return _refused(request, case.pk, error)
    messages.success(request, f"Transferred to {form.cleaned_data['queue'].name}.")
    return _redirect(request, reverse("inbox"))
