"""Messages to people: e-mail to a queue's team for urgent cases, and breach digests to its
managers. Agent-supplied text goes into plain-text mail only, never HTML."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail

from accounts.models import Role
from escalation.models import Escalation


def team_addresses(queue, role: str | None = None) -> list[str]:
    users = (
        get_user_model()
        .objects.filter(memberships__team_id=queue.team_id, is_active=True)
        .exclude(email="")
    )
    if role is not None:
        users = users.filter(memberships__role=role)
    return sorted(set(users.values_list("email", flat=True)))


def case_link(case) -> str:
    return f"{settings.HANDOFF_PUBLIC_URL.rstrip('/')}/cases/{case.pk}/"


def email_urgent_case(case_id) -> int:
    """E-mail the case's queue team; returns the number of recipients (0 if none or terminal)."""
    case = Escalation.objects.select_related("queue").get(pk=case_id)
    if case.is_terminal:
        return 0
    recipients = team_addresses(case.queue)
    if not recipients:
        return 0
    send_mail(
        subject=f"[Handoff] Urgent case in {case.queue.name}: {case.summary[:120]}",
        message=(
            f"An urgent case needs a reviewer in queue {case.queue.slug}.\n\n"
            f"Summary: {case.summary}\nConfidence: {case.confidence:.2f}\n"
            f"Claim due: {case.claim_due_at:%Y-%m-%d %H:%M} UTC\n\n{case_link(case)}\n"
        ),
        from_email=None,
        recipient_list=recipients,
    )
    return len(recipients)


def email_breach_digest(queue, events) -> int:
    """One mail to the queue's managers listing the breaches in `events` (audit events)."""
    recipients = team_addresses(queue, role=Role.MANAGER)
    if not recipients:
        return 0
    lines = []
    for event in events:
        which = "claim" if event.verb == "sla.claim_breached" else "resolve"
        case = event.escalation
        lines.append(
            f"- {which} target missed (due {str(event.data.get('due_at', ''))[:16]} UTC): "
            f"{case.summary[:120]} [{case.get_priority_display()}]\n  {case_link(case)}"
        )
    count = len(events)
    send_mail(
        subject=f"[Handoff] {count} SLA breach{'es' if count != 1 else ''} in {queue.name}",
        message=(
            f"Breaches recorded in queue {queue.slug}:\n\n"
            + "\n".join(lines)
            + "\n\nEvery breach is also in the audit log.\n"
        ),
        from_email=None,
        recipient_list=recipients,
    )
    return len(recipients)


AUTONOMY_SUBJECTS = {
    "promoted": "now acts alone above its certified threshold",
    "amber": "is amber: its QA samples can no longer re-certify it",
    "mode_set": "changed mode",
}


def email_autonomy_change(payload: dict) -> int:
    """Tell the queue's managers that a scope changed mode or health (an outbox item's
    payload: scope, reason, to, detail)."""
    from escalation.models import Scope

    scope = Scope.objects.select_related("agent", "queue").get(pk=payload["scope"])
    recipients = team_addresses(scope.queue, role=Role.MANAGER)
    if not recipients:
        return 0
    reason = payload["reason"]
    what = AUTONOMY_SUBJECTS.get(reason, "fell back to assisted: people decide again")
    version = scope.agent_version or "(no version)"
    send_mail(
        subject=f"[Handoff] {scope.agent.name} {version} in {scope.queue.name} {what}",
        message=(
            f"Agent {scope.agent.name}, version {version}, queue {scope.queue.slug}: "
            f"{reason} -> {payload['to']}.\n{payload.get('detail', '')}\n\n"
            f"{settings.HANDOFF_PUBLIC_URL.rstrip('/')}/manage/agents/\n"
        ),
        from_email=None,
        recipient_list=recipients,
    )
    return len(recipients)
