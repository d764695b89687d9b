"""create_queue: a team's queue, or an update of the fields given for an existing slug."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser
from django.db import transaction

from escalation import sla
from escalation.models import Queue
from handoff.commands import OperatorCommand, one_line, team_for
from handoff.env import parse_duration

DEFAULT_TEAM = "ops"
_UNITS = (("d", 86400), ("h", 3600), ("m", 60))


def format_duration(seconds: int) -> str:
    """The largest unit that divides evenly: 1800 -> '30m', 86400 -> '1d', 90 -> '90s'."""
    for unit, size in _UNITS:
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _duration(option: str, text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise CommandError(f"{option}: {exc}") from None


def _sla_target(text: str) -> tuple[str, dict[str, int]]:
    """'urgent=5m/30m' -> ('urgent', {'claim': 300, 'resolve': 1800})."""
    priority, _, times = text.partition("=")
    claim, slash, resolve = times.partition("/")
    if not (priority and claim and slash and resolve):
        raise CommandError(f"--sla {text!r}: expected PRIORITY=CLAIM/RESOLVE, e.g. urgent=5m/30m")
    if priority not in sla.PRIORITIES:
        raise CommandError(
            f"--sla {text!r}: unknown priority (expected one of {', '.join(sla.PRIORITIES)})"
        )
    option = f"--sla {priority}"
    return priority, {"claim": _duration(option, claim), "resolve": _duration(option, resolve)}


def _json(option: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CommandError(f"{option}: not valid JSON ({exc})") from None


def describe(queue: Queue) -> str:
    policy = sla.normalize_policy(queue.sla_policy)
    targets = ", ".join(
        f"{p} {format_duration(policy[p]['claim'])}/{format_duration(policy[p]['resolve'])}"
        for p in sla.PRIORITIES
    )
    return (
        f"queue {queue.slug} (team {queue.team.slug}): {targets}; "
        f"lease {format_duration(queue.lease_seconds)}, "
        f"expires after {format_duration(queue.expire_after_seconds)}; "
        f"{len(queue.label_schema.get('properties', {}))} label fields, "
        f"{len(queue.routing_rules)} routing rules"
    )


class Command(OperatorCommand):
    help = "Create a queue, or update the given fields of the queue with that slug."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", required=True)
        parser.add_argument("--name", help="required for a new queue")
        parser.add_argument(
            "--team", help=f"owning team's slug, created if missing (new queues: {DEFAULT_TEAM})"
        )
        parser.add_argument(
            "--sla",
            nargs="+",
            action="extend",
            default=[],
            metavar="PRIORITY=CLAIM/RESOLVE",
            help="e.g. urgent=5m/30m high=15m/2h; priorities not named keep their targets",
        )
        parser.add_argument("--lease", metavar="D", help="claim lease, e.g. 15m (default)")
        parser.add_argument("--expire-after", metavar="D", help="expiry horizon, e.g. 7d (default)")
        parser.add_argument("--label-schema", metavar="JSON")
        parser.add_argument("--routing-rules", metavar="JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        slug = options["slug"]
        with transaction.atomic():
            queue = Queue.objects.select_for_update().filter(slug=slug).first()
            created = queue is None
            if queue is None:
                if not options["name"]:
                    raise CommandError(f"--name is required to create queue {slug}")
                queue = Queue(slug=slug)
            if options["name"]:
                queue.name = options["name"]
            if options["team"] or created:
                queue.team = team_for(options["team"] or DEFAULT_TEAM)
            if options["sla"]:
                policy = dict(queue.sla_policy or {})
                policy.update(_sla_target(text) for text in options["sla"])
                queue.sla_policy = policy
            if options["lease"]:
                queue.lease_seconds = _duration("--lease", options["lease"])
            if options["expire_after"]:
                queue.expire_after_seconds = _duration("--expire-after", options["expire_after"])
            if options["label_schema"] is not None:
                queue.label_schema = _json("--label-schema", options["label_schema"])
            if options["routing_rules"] is not None:
                queue.routing_rules = _json("--routing-rules", options["routing_rules"])
            try:
                queue.full_clean()  # Queue.clean checks the policy, label schema and rules
            except ValidationError as exc:
                raise CommandError(one_line(exc)) from None
            queue.save()
        self.stdout.write(f"{describe(queue)} ({'created' if created else 'updated'})")
