"""rotate_webhook_secret: a new whsec_ signing secret, printed once; the old one keeps signing
beside it for 24 h."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from escalation import keys
from escalation.audit import Actor
from escalation.models import Agent
from handoff.commands import OperatorCommand


class Command(OperatorCommand):
    help = "Rotate an agent's webhook signing secret; both are used for 24 h."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--agent", required=True, help="the agent's name")

    def handle(self, *args: Any, **options: Any) -> None:
        agent = Agent.objects.filter(name=options["agent"]).first()
        if agent is None:
            raise CommandError(f"no agent named {options['agent']}")
        secret = keys.rotate_webhook_secret(agent=agent, actor=Actor.system())
        self.stdout.write(
            f"new webhook secret for {agent.name} (shown once; the old one also signs for 24 h):"
        )
        self.stdout.write(secret)
