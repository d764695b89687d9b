"""Manager pages. Each looks up only what the person manages (permissions.managed_queues) and
changes state only through the domain modules."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts import permissions
from escalation import delivery
from escalation.audit import Actor
from escalation.models import Delivery, DeliveryStatus

DELIVERIES_SHOWN = 200


def _require_manager(request: HttpRequest) -> None:
    if not permissions.is_manager(request.user):
        raise PermissionDenied("managers only")


def _deliveries_for(user):
    return Delivery.objects.filter(escalation__queue__in=permissions.managed_queues(user))


@login_required
@require_GET
def deliveries(request: HttpRequest) -> HttpResponse:
    """Webhook deliveries of the manager's queues, dead ones first, then pending, then sent."""
    _require_manager(request)
    mine = _deliveries_for(request.user).select_related("agent", "escalation").defer("body")
    # One newest-first read per status (an index range each, delivery_status_time_idx), not a
    # sort of every delivery by a computed rank: flat however many were ever sent.
    rows: list = []
    for status in (DeliveryStatus.DEAD, DeliveryStatus.PENDING, DeliveryStatus.SUCCEEDED):
        if len(rows) < DELIVERIES_SHOWN:
            newest = mine.filter(status=status).order_by("-created_at", "-pk")
            rows += newest[: DELIVERIES_SHOWN - len(rows)]
    dead = _deliveries_for(request.user).filter(status=DeliveryStatus.DEAD).count()
    return render(request, "escalation/deliveries.html", {"deliveries": rows, "dead": dead})


@login_required
@require_POST
def redeliver(request: HttpRequest, delivery_id: int) -> HttpResponse:
    _require_manager(request)
    if not _deliveries_for(request.user).filter(pk=delivery_id).exists():
        raise Http404("no such delivery")
    try:
        again = delivery.redeliver(delivery_id=delivery_id, actor=Actor.for_user(request.user))
    except delivery.RedeliveryError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Delivery {again.pk} queued again ({again.webhook_id}).")
    return redirect(reverse("manage-deliveries"))
