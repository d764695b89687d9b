"""create_agent: an agent allowed to post to some queues (all when none are named)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser
from django.db import transaction

from escalation.models import Agent, Queue
from escalation.ssrf import validate_callback_url
from handoff.commands import OperatorCommand, one_line


def _queues(text: str) -> list[Queue]:
    slugs = list(dict.fromkeys(slug.strip() for slug in text.split(",") if slug.strip()))
    if not slugs:
        raise CommandError("--queues names no queue (omit it to allow every queue)")
    found = {queue.slug: queue for queue in Queue.objects.filter(slug__in=slugs)}
    missing = [slug for slug in slugs if slug not in found]
    if missing:
        raise CommandError(f"unknown queue: {', '.join(missing)}")
    return [found[slug] for slug in slugs]


class Command(OperatorCommand):
    help = "Create an agent; prints its webhook signing secret once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="a slug, e.g. refund-bot")
        parser.add_argument("--callback-url", default="", help="http(s) URL for decisions")
        parser.add_argument(
            "--queues", metavar="a,b", help="queue slugs it may post to (default: every queue)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name, url = options["name"], options["callback_url"].strip()
        if Agent.objects.filter(name=name).exists():
            raise CommandError(f"agent {name} already exists")
        if url:
            try:
                validate_callback_url(url)
            except ValidationError as exc:
                raise CommandError(f"--callback-url {url!r}: {' '.join(exc.messages)}") from None
        queues = None if options["queues"] is None else _queues(options["queues"])
        agent = Agent(name=name, callback_url=url, all_queues=queues is None)
        try:
            agent.full_clean()
        except ValidationError as exc:
            raise CommandError(one_line(exc)) from None
        with transaction.atomic():
            agent.save()
            if queues:
                agent.queues.set(queues)
        allowed = "every queue" if queues is None else ", ".join(q.slug for q in queues)
        self.stdout.write(
            f"agent {name}: may post to {allowed}; callback {url or '(none)'} (created)"
        )
        self.stdout.write(f"webhook signing secret (shown once): {agent.webhook_secret}")
        self.stdout.write(f"next: manage.py create_agent_key --agent {name}")
