"""verify_audit_chain: recompute the audit hash chain; exit 0 only when it is intact."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from escalation import audit
from handoff.commands import OperatorCommand


class Command(OperatorCommand):
    help = (
        "Verify the audit log's hash chain, optionally against a checkpoint (SEQ:HASH) copied "
        "from the application log; non-zero exit naming the first bad event otherwise."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--checkpoint", metavar="SEQ:HASH")

    def handle(self, *args: Any, **options: Any) -> None:
        checkpoint = None
        if options["checkpoint"]:
            try:
                checkpoint = audit.parse_checkpoint(options["checkpoint"])
            except ValueError as exc:
                raise CommandError(f"--checkpoint: {exc}") from None
        report = audit.verify_chain(checkpoint=checkpoint)
        if not report.ok:
            raise CommandError(f"audit chain broken: {report.problem}")
        matched = f"; matches checkpoint {checkpoint[0]}" if checkpoint else ""
        self.stdout.write(
            f"audit chain intact: {report.checked} events, "
            f"head {report.head_seq}:{report.head_hash}{matched}"
        )
