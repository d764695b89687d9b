"""/manage/exports/: a manager downloads the labels of the queues they manage, as JSON Lines or
CSV, filtered by queue, agent and period; the file streams from escalation.exports (the same
exporter as GET /api/v1/labels)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from urllib.parse import urlencode

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from accounts import permissions
from escalation import exports
from escalation.models import Agent, CalibrationCell, Escalation

FORMAT_NAMES = {exports.JSONL: "JSON Lines (.jsonl)", exports.CSV: "CSV (.csv)"}


def _require_manager(request: HttpRequest) -> None:
    if not permissions.is_manager(request.user):
        raise PermissionDenied("managers only")


def _agents_for(queues: QuerySet) -> QuerySet[Agent]:
    """Agents with a resolved case in any of these queues: those with a calibration cell
    there (a few hundred rows at most, not a probe into the cases)."""
    labelled = CalibrationCell.objects.filter(queue__in=queues).values("agent_id")
    return Agent.objects.filter(pk__in=labelled).order_by("name")


class ExportForm(forms.Form):
    """The filters; the period is a pair of UTC dates, `from` and `to`, both inclusive."""

    queue = forms.ChoiceField(required=False, label="Queue")
    agent = forms.ChoiceField(required=False, label="Agent")
    format = forms.ChoiceField(
        choices=list(FORMAT_NAMES.items()), initial=exports.CSV, label="Format", required=False
    )

    def __init__(self, data, *, queues: QuerySet, **kwargs):
        super().__init__(data, **kwargs)
        # `from` is a keyword, so these two are added here rather than declared.
        self.fields["from"] = forms.DateField(
            required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
        )
        self.fields["to"] = forms.DateField(
            required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
        )
        self.order_fields(["queue", "agent", "from", "to", "format"])
        self.fields["queue"].choices = [("", "All my queues")] + [
            (q.slug, q.name) for q in queues.order_by("name")
        ]
        self.fields["agent"].choices = [("", "All agents")] + [
            (a.name, a.name) for a in _agents_for(queues)
        ]

    def clean(self):
        data = super().clean()
        start, end = data.get("from"), data.get("to")
        if start and end and start > end:
            self.add_error("to", "must not be before From")
        return data

    def query(self) -> dict[str, str]:
        """The filters as the download URL's query string carries them."""
        data = self.cleaned_data
        pairs = {
            "queue": data.get("queue") or "",
            "agent": data.get("agent") or "",
            "from": data["from"].isoformat() if data.get("from") else "",
            "to": data["to"].isoformat() if data.get("to") else "",
        }
        return {name: value for name, value in pairs.items() if value}


def _form(request: HttpRequest) -> ExportForm:
    return ExportForm(
        request.GET if request.GET else None,
        queues=permissions.managed_queues(request.user),
    )


def _selected(user, form: ExportForm) -> QuerySet[Escalation]:
    """The cases the filters pick among those of the queues this person manages."""
    data = form.cleaned_data
    cases = Escalation.objects.filter(queue__in=permissions.managed_queues(user))
    if data.get("queue"):
        cases = cases.filter(queue__slug=data["queue"])
    if data.get("agent"):
        cases = cases.filter(agent__name=data["agent"])
    if data.get("from"):
        start = datetime.combine(data["from"], time.min, tzinfo=UTC)
        cases = cases.filter(resolution__resolved_at__gte=start)
    if data.get("to"):
        end = datetime.combine(data["to"] + timedelta(days=1), time.min, tzinfo=UTC)
        cases = cases.filter(resolution__resolved_at__lt=end)
    return cases


def _download_url(fmt: str, query: dict[str, str]) -> str:
    url = reverse("manage-export-labels", kwargs={"fmt": fmt})
    return f"{url}?{urlencode(query)}" if query else url


@login_required
@require_GET
def export_page(request: HttpRequest) -> HttpResponse:
    """The form; submitted with a format it sends the browser to the download."""
    _require_manager(request)
    form = _form(request)
    links = {}
    if form.is_bound and form.is_valid():
        if form.cleaned_data.get("format"):
            return redirect(_download_url(form.cleaned_data["format"], form.query()))
        links = {fmt: _download_url(fmt, form.query()) for fmt in exports.FORMATS}
    elif not form.is_bound:
        links = {fmt: _download_url(fmt, {}) for fmt in exports.FORMATS}
    return render(
        request,
        "escalation/manage_exports.html",
        {"form": form, "links": links},
        status=200 if not form.is_bound or form.is_valid() else 400,
    )


@login_required
@require_GET
def export_labels(request: HttpRequest, fmt: str) -> HttpResponse:
    """The labels of the manager's queues matching the filters, streamed."""
    _require_manager(request)
    if fmt not in exports.FORMATS:  # the route admits only these
        raise Http404("no such format")
    form = ExportForm(request.GET, queues=permissions.managed_queues(request.user))
    if not form.is_valid():
        problems = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items())
        return HttpResponseBadRequest(f"bad filters: {problems}", content_type="text/plain")
    query = form.query()
    filename = "-".join(["labels", *query.values()])  # slugs and ISO dates: safe in a name
    return exports.stream(
        request, _selected(request.user, form), fmt, filename=filename, with_agent=True
    )
