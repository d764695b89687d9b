"""revoke_agent_key: revoke an API key by its visible 12-character prefix."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from escalation import keys
from escalation.audit import Actor
from escalation.models.agents import VISIBLE_PREFIX_LENGTH
from handoff.commands import OperatorCommand


class Command(OperatorCommand):
    help = "Revoke an agent's API key by its visible prefix (hnd_ + 8 characters)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--prefix", required=True, metavar="hnd_XXXXXXXX")

    def handle(self, *args: Any, **options: Any) -> None:
        prefix = options["prefix"].strip()
        if len(prefix) != VISIBLE_PREFIX_LENGTH:
            raise CommandError(
                f"--prefix must be the key's first {VISIBLE_PREFIX_LENGTH} characters "
                "(hnd_ + 8), as shown in lists and logs"
            )
        try:
            key = keys.revoke_key(prefix=prefix, actor=Actor.system())
        except keys.AgentKeyError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"revoked key {prefix} of agent {key.agent.name}")
