"""create_agent_key: a new API key for an agent; the raw key alone is the last line of stdout."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from escalation import keys
from escalation.audit import Actor
from escalation.models import Agent
from handoff.commands import OperatorCommand


class Command(OperatorCommand):
    help = "Create an API key for an agent; the key is printed once, alone on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--agent", required=True, help="the agent's name")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["agent"]
        agent = Agent.objects.filter(name=name).first()
        if agent is None:
            raise CommandError(f"no agent named {name}")
        try:
            key, raw = keys.issue_key(agent=agent, actor=Actor.system())
        except keys.AgentKeyError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"key {key.prefix} for agent {name} (shown once, store it now):")
        self.stdout.write(raw)
