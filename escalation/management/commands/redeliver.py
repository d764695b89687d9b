"""redeliver: send a dead webhook delivery again (same webhook-id), or all dead ones."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from escalation import delivery
from escalation.audit import Actor
from escalation.models import Delivery, DeliveryStatus
from handoff.commands import OperatorCommand


class Command(OperatorCommand):
    help = "Re-send one dead webhook delivery (--delivery ID) or every dead one (--dead)."

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--delivery", type=int, metavar="ID")
        which.add_argument("--dead", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["dead"]:
            ids = list(
                Delivery.objects.filter(status=DeliveryStatus.DEAD)
                .order_by("dead_at")
                .values_list("pk", flat=True)
            )
        else:
            ids = [options["delivery"]]
        for delivery_id in ids:
            try:
                again = delivery.redeliver(delivery_id=delivery_id, actor=Actor.system())
            except delivery.RedeliveryError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"delivery {again.pk} ({again.webhook_id}) to {again.url}: queued")
        self.stdout.write(f"{len(ids)} delivery(ies) queued again")
