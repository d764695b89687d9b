"""refresh_stats: fold the manager console's rollups now, or rebuild them from scratch."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from escalation import rollups
from handoff.commands import OperatorCommand


class Command(OperatorCommand):
    help = (
        "Bring the manager console's statistics up to date now (what the refresh-stats beat "
        "task does), or with --rebuild recompute every rollup and calibration cell from the "
        "cases (after a bulk import or a restore)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rebuild", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["rebuild"]:
            cells = rollups.rebuild_calibration()
            rollups.reset_days()
            self.stdout.write(f"calibration cells recounted: {cells}")
        folded = rollups.refresh()
        self.stdout.write(f"statistics folded: {folded} audit events; as of {rollups.as_of()}")
