"""Inbox server time with 100k open cases, against the same requests at 1k (baseline, same run).

Measures in-process (Django test client: URL routing, permission lookups, queries, template),
median of repeated requests for: the first page, a deep keyset page, a filtered page, and the
live poll that finds nothing changed (204).

    .venv/bin/python bench/inbox.py [--cases 100000]

Uses its own PostgreSQL database (handoff_bench_inbox, re-created).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB = "handoff_bench_inbox"
os.environ.update(
    DJANGO_SETTINGS_MODULE="handoff.settings",
    DJANGO_SECRET_KEY="bench-only",
    DJANGO_ALLOWED_HOSTS="testserver",
    DATABASE_URL=os.environ.get("BENCH_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{DB}"),
)


def recreate_database() -> None:
    for sql in (f"DROP DATABASE IF EXISTS {DB}", f"CREATE DATABASE {DB}"):
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql],
            check=True,
            capture_output=True,
        )


def insert_cases(agent, queues, count: int, start: int) -> None:
    """Bulk rows shaped like real ones (due times spread around now, all priorities)."""
    from django.utils import timezone

    from escalation import sla
    from escalation.models import Escalation
    from escalation.models.cases import PRIORITY_RANK

    now = timezone.now()
    batch = []
    priorities = ["urgent", "high", "normal", "low"]
    for i in range(start, start + count):
        priority = priorities[i % 4]
        created = now - timedelta(seconds=(i * 37) % 30000)
        due = sla.due_times(created, priority, sla.DEFAULT_POLICY)
        batch.append(
            Escalation(
                id=uuid.uuid4(),
                agent=agent,
                queue=queues[i % len(queues)],
                summary=f"Refund request #{i} over the auto-approve limit",
                confidence=(i % 100) / 100,
                priority=priority,
                priority_rank=PRIORITY_RANK[priority],
                reason="low_confidence",
                context={"conversation": [{"role": "customer", "text": "x" * 400}], "n": i},
                proposed_action={"type": "refund", "amount": i % 5000},
                external_id=f"t-{i}",
                metadata={"tier": "gold" if i % 7 == 0 else "silver"},
                status="open",
                created_at=created,
                updated_at=created,
                entered_queue_at=created,
                claim_due_at=due.claim_due_at,
                resolve_due_at=due.resolve_due_at,
                claim_risk_at=due.claim_risk_at,
                resolve_risk_at=due.resolve_risk_at,
                next_due_at=due.claim_due_at,
                next_risk_at=due.claim_risk_at,
                expires_at=created + timedelta(days=7),
                routed_at=created,
            )
        )
        if len(batch) == 5000:
            Escalation.objects.bulk_create(batch)
            batch = []
    if batch:
        Escalation.objects.bulk_create(batch)


def measure(client, url: str, repeat: int, headers: dict | None = None, expect: int = 200) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url, headers=headers or {})
        samples.append(time.perf_counter() - started)
        assert response.status_code == expect, (url, response.status_code)
    return round(statistics.median(samples) * 1000, 2)


def run_suite(client, repeat: int) -> dict:
    # Follow "Next page" 10 times to reach a deep keyset page.
    url = "/inbox/"
    for _ in range(10):
        match = re.search(r'href="\?(after=[^"]+)"', client.get(url).content.decode())
        url = f"/inbox/?{match.group(1).replace('&amp;', '&')}"
    htmx = {"HX-Request": "true", "HX-Target": "case-list"}
    result = {
        "first_page_ms": measure(client, "/inbox/", repeat),
        "page_11_ms": measure(client, url, repeat),
        "filtered_ms": measure(client, "/inbox/?priority=urgent&sla=breached", repeat),
    }
    page = client.get("/inbox/").content.decode()
    version = re.search(r"since=([^\"&]+)", page).group(1)  # it changes each minute
    result["poll_unchanged_ms"] = measure(client, f"/inbox/?since={version}", repeat, htmx, 204)
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    recreate_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    call_command("migrate", "--noinput", verbosity=0)
    from django.contrib.auth.models import User

    from accounts.models import Membership, Team
    from escalation.models import Agent, Queue

    team = Team.objects.create(slug="ops", name="Ops")
    queues = [
        Queue.objects.create(slug=s, name=s.title(), team=team)
        for s in ("refunds", "support", "billing")
    ]
    agent = Agent.objects.create(name="bench-agent", all_queues=True)
    user = User.objects.create_user("bench-reviewer")
    Membership.objects.create(user=user, team=team)
    client = Client()
    client.force_login(user)

    insert_cases(agent, queues, args.baseline, 0)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    baseline = run_suite(client, args.repeat)
    started = time.monotonic()
    insert_cases(agent, queues, args.cases - args.baseline, args.baseline)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    load_seconds = round(time.monotonic() - started, 1)
    target = run_suite(client, args.repeat)
    result = {
        "open_cases": {"baseline": args.baseline, "target": args.cases},
        "baseline": baseline,
        "target": target,
        "ratio_target_to_baseline": {k: round(target[k] / baseline[k], 2) for k in target},
        "insert_seconds": load_seconds,
    }
    print(json.dumps(result, indent=2))
    connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
