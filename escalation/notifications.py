"""Messages to people: e-mail to a queue's team for urgent cases."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail

from escalation.models import Escalation


def team_addresses(queue) -> list[str]:
    users = (
        get_user_model()
        .objects.filter(memberships__team_id=queue.team_id, is_active=True)
        .exclude(email="")
    )
    return sorted(set(users.values_list("email", flat=True)))


def email_urgent_case(case_id) -> int:
    """E-mail the case's queue team; returns the number of recipients (0 if none or terminal)."""
    case = Escalation.objects.select_related("queue").get(pk=case_id)
    if case.is_terminal:
        return 0
    recipients = team_addresses(case.queue)
    if not recipients:
        return 0
    url = f"{settings.HANDOFF_PUBLIC_URL.rstrip('/')}/cases/{case.pk}/"
    # Agent-supplied summary goes into a plain-text mail only; it is never rendered as HTML.
    send_mail(
        subject=f"[Handoff] Urgent case in {case.queue.name}: {case.summary[:120]}",
        message=(
            f"An urgent case needs a reviewer in queue {case.queue.slug}.\n\n"
            f"Summary: {case.summary}\nConfidence: {case.confidence:.2f}\n"
            f"Claim due: {case.claim_due_at:%Y-%m-%d %H:%M} UTC\n\n{url}\n"
        ),
        from_email=None,
        recipient_list=recipients,
    )
    return len(recipients)
