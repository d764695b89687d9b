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
import re
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import fresh_schema, median_ms, team_with_queues, use_database  # noqa: E402

DB = "handoff_bench_inbox"


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


def deep_page(client, pages: int = 10) -> str:
    """The URL reached by following "Next page" `pages` times from the first inbox page."""
    url = "/inbox/"
    for _ in range(pages):
        match = re.search(r'href="\?(after=[^"]+)"', client.get(url).content.decode())
        url = f"/inbox/?{match.group(1).replace('&amp;', '&')}"
    return url


def run_suite(client, repeat: int) -> dict:
    url = deep_page(client)
    htmx = {"HX-Request": "true", "HX-Target": "case-list"}
    result = {
        "first_page_ms": median_ms(client, "/inbox/", repeat),
        "page_11_ms": median_ms(client, url, repeat),
        "filtered_ms": median_ms(client, "/inbox/?priority=urgent&sla=breached", repeat),
    }
    page = client.get("/inbox/").content.decode()
    version = re.search(r"since=([^\"&]+)", page).group(1)  # it changes each minute
    result["poll_unchanged_ms"] = median_ms(client, f"/inbox/?since={version}", repeat, htmx, 204)
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    use_database(DB)
    fresh_schema(DB)
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    from accounts.models import Membership
    from escalation.models import Agent

    team, queues = team_with_queues()
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
