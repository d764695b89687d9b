"""What every benchmark here shares: a PostgreSQL database of its own (re-created each run), a
fresh schema, the usual team with three queues, and the median of timed in-process requests."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def use_database(name: str) -> None:
    """Point Django at the benchmark's own database (call before django.setup())."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="handoff.settings",
        DJANGO_SECRET_KEY="bench-only",
        DJANGO_ALLOWED_HOSTS="testserver",
        DATABASE_URL=os.environ.get(
            "BENCH_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{name}"
        ),
    )


def fresh_schema(name: str) -> None:
    """Drop and re-create the database, set Django up and migrate it."""
    for sql in (f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}"):
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql],
            check=True,
            capture_output=True,
        )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)


def team_with_queues():
    """Team ops owning queues refunds, support and billing."""
    from accounts.models import Team
    from escalation.models import Queue

    team = Team.objects.create(slug="ops", name="Ops")
    queues = [
        Queue.objects.create(slug=s, name=s.title(), team=team)
        for s in ("refunds", "support", "billing")
    ]
    return team, queues


def median_ms(
    client, url: str, repeat: int, headers: dict | None = None, expect: int = 200
) -> float:
    """Median server time of `repeat` GETs through the Django test client, in milliseconds."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url, headers=headers or {})
        samples.append(time.perf_counter() - started)
        assert response.status_code == expect, (url, response.status_code)
    return round(statistics.median(samples) * 1000, 2)
