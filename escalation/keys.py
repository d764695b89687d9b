"""Issuing and revoking agent API keys, audited. The admin and the commands both call these."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from escalation import audit
from escalation.audit import Actor
from escalation.models import Agent, AgentKey


class AgentKeyError(Exception):
    """A key operation that cannot be done (unknown agent or prefix, already revoked)."""


def issue_key(*, agent: Agent, actor: Actor) -> tuple[AgentKey, str]:
    """A new key for an active agent; returns the row and the raw key (shown once, never again)."""
    if not agent.is_active:
        raise AgentKeyError(f"agent {agent.name} is inactive")
    with transaction.atomic():
        key, raw = AgentKey.generate(agent)
        audit.record(
            actor=actor,
            verb="agent.key_created",
            data={"agent": agent.name, "agent_id": agent.pk, "prefix": key.prefix},
        )
    return key, raw


def revoke_key(*, prefix: str, actor: Actor) -> AgentKey:
    """Revoke by visible prefix (hnd_XXXXXXXX); refused if unknown or already revoked."""
    with transaction.atomic():
        key = (
            AgentKey.objects.select_for_update()
            .select_related("agent")
            .filter(prefix=prefix)
            .first()
        )
        if key is None:
            raise AgentKeyError(f"no key with prefix {prefix}")
        if key.revoked_at is not None:
            raise AgentKeyError(
                f"key {prefix} was already revoked at {key.revoked_at:%Y-%m-%d %H:%M} UTC"
            )
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit.record(
            actor=actor,
            verb="agent.key_revoked",
            data={"agent": key.agent.name, "agent_id": key.agent_id, "prefix": prefix},
        )
    return key


def rotate_webhook_secret(*, agent: Agent, actor: Actor) -> str:
    """A new signing secret, returned once; the old one keeps signing beside it for 24 h so
    receivers can switch over without dropping a delivery."""
    from escalation.delivery import SECRET_OVERLAP
    from escalation.models.agents import new_webhook_secret

    with transaction.atomic():
        locked = Agent.objects.select_for_update().get(pk=agent.pk)
        locked.previous_webhook_secret = locked.webhook_secret
        locked.previous_secret_expires_at = timezone.now() + SECRET_OVERLAP
        locked.webhook_secret = new_webhook_secret()
        locked.save(
            update_fields=[
                "webhook_secret",
                "previous_webhook_secret",
                "previous_secret_expires_at",
            ]
        )
        audit.record(
            actor=actor,
            verb="agent.webhook_secret_rotated",
            data={
                "agent": locked.name,
                "agent_id": locked.pk,
                "previous_valid_until": locked.previous_secret_expires_at.isoformat(),
            },
        )
    return locked.webhook_secret
