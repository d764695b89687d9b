"""seed_demo: idempotent demo data (escalation.demo) and a fresh API key for the demo agent."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.db import transaction

from accounts.management.commands.create_user import ensure_user
from escalation import demo, keys, transitions
from escalation.audit import Actor
from escalation.models import Agent, Escalation, Queue
from handoff.commands import OperatorCommand, one_line, team_for
from handoff.env import env_str


def _ensure_queue(spec: dict[str, Any], team) -> Queue:
    # Created once; an operator's later edits to a demo queue survive re-seeding.
    queue = Queue.objects.filter(slug=spec["slug"]).first()
    if queue is None:
        queue = Queue(team=team, **spec)
        try:
            queue.full_clean()
        except ValidationError as exc:
            raise CommandError(f"demo queue {spec['slug']}: {one_line(exc)}") from None
        queue.save()
    return queue


def _seed_cases(agent: Agent, queues: dict[str, Queue]) -> int:
    """The demo cases, only while the demo agent has none (so re-running adds nothing)."""
    if Escalation.objects.filter(agent=agent).exists():
        return 0
    actor = Actor.for_agent(agent)
    for case in demo.CASES:
        fields = {k: v for k, v in case.items() if k != "queue"}
        transitions.create(actor=actor, agent=agent, queue=queues[case["queue"]], **fields)
    return len(demo.CASES)


class Command(OperatorCommand):
    help = "Create the demo team, queues, people, agent and cases (idempotent); prints a new key."

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            team = team_for(demo.TEAM)
            queues = {spec["slug"]: _ensure_queue(spec, team) for spec in demo.QUEUES}
            people = [ensure_user(**user) for user in demo.USERS]
            agent, _ = Agent.objects.get_or_create(name=demo.AGENT, defaults={"all_queues": True})
            if not agent.is_active:
                raise CommandError(f"agent {demo.AGENT} is deactivated; reactivate it first")
            added = _seed_cases(agent, queues)
            key, raw = keys.issue_key(agent=agent, actor=Actor.system())
        self.stdout.write(f"team {team.slug}: queues {', '.join(queues)}")
        self.stdout.write("\n".join(people))
        self.stdout.write(
            f"{added} demo cases created"
            if added
            else f"{demo.AGENT} already has cases; none added"
        )
        self.stdout.write(
            f"\nOpen http://127.0.0.1:{env_str('PORT', '8000')}/inbox/ and sign in as:"
        )
        for user in demo.USERS:
            where = f"{user['role']} in team {user['team']}" if user["team"] else user["role"]
            self.stdout.write(f"  {user['username']:<10} password {user['password']:<18} ({where})")
        self.stdout.write(
            f"\nAPI key for agent {demo.AGENT} ({key.prefix}; new on every run, "
            "earlier demo keys stay valid):"
        )
        self.stdout.write(raw)
