"""redact_case: replace a case's context and metadata with a redaction marker (audited)."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import CommandError, CommandParser

from escalation import transitions
from escalation.audit import Actor
from handoff.commands import OperatorCommand


class Command(OperatorCommand):
    help = (
        "Redact a case's personal data (context, metadata, context updates); the chain stays valid."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--id", required=True, metavar="UUID", help="the case id")
        parser.add_argument("--reason", required=True, help="why, e.g. a GDPR erasure request")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            case_id = uuid.UUID(options["id"])
        except ValueError:
            raise CommandError(f"--id {options['id']!r} is not a case id (a UUID)") from None
        try:
            case = transitions.redact(
                actor=Actor.system(), case_id=case_id, reason=options["reason"]
            )
        except transitions.TransitionError as exc:
            raise CommandError(f"case {case_id}: {exc.message}") from None
        self.stdout.write(f"redacted case {case.pk} ({case.queue.slug}): {options['reason']}")
