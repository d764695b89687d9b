"""`make bench`: the benchmark suite, each figure beside its baseline measured in the same run.

    .venv/bin/python bench/run.py [--quick] [--only ingest,batch,claims,longpoll,webhooks,inbox]

Sets up its own PostgreSQL database (handoff_bench_suite, re-created) and its own redis-server
on a free port, serves Handoff and the bare baseline (bench/baseline/) with gunicorn + uvicorn
workers on 127.0.0.1, drives them from a second process (bench/load.py), and rewrites the
suite's section of bench/RESULTS.md (the other sections are left as they are). Every process
it starts is stopped by its PID. `--quick` is a small, fast run for development.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import (
    harness,  # noqa: E402
    suite,  # noqa: E402
)
from bench.harness import log  # noqa: E402

DB = "handoff_bench_suite"
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")


@dataclass
class Sizes:
    rounds: int = 3
    seconds: float = 5.0
    concurrency: tuple[int, ...] = (1, 8, 32)
    batch_concurrency: int = 4
    claim_cases: int = 3_334  # a round; the rounds together decide 10,000 cases
    reviewers: tuple[int, ...] = (8, 32)
    inbox_cases: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    inbox_repeat: int = 100
    other_team_cases: int = 100_000
    breaching: int = 1000
    waiters: int = 500
    deliveries: int = 1000


QUICK = Sizes(
    rounds=2,
    seconds=2.0,
    claim_cases=300,
    inbox_cases=(2_000, 10_000, 40_000),
    inbox_repeat=30,
    other_team_cases=10_000,
    breaching=200,
    waiters=100,
    deliveries=200,
)


class Bench:
    """The run's shared state: sizes, processes, the database's cast, results."""

    def __init__(self, sizes: Sizes, workdir: Path) -> None:
        self.sizes, self.workdir = sizes, workdir
        self.results: dict = {}
        self.processes: list[harness.Process] = []

    # --- environment ------------------------------------------------------------------------

    def dsn(self, application: str) -> str:
        return f"{PG}/{DB}?application_name={application}"

    def env(self, application: str, **extra: str) -> dict:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="handoff.settings",
            DJANGO_SECRET_KEY="bench-only",
            DJANGO_DEBUG="0",
            DJANGO_ALLOWED_HOSTS="127.0.0.1,testserver",
            DATABASE_URL=self.dsn(application),
            REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            CELERY_BROKER_URL=f"redis://127.0.0.1:{self.redis_port}/1",
            HANDOFF_LOG_LEVEL="WARNING",
            HANDOFF_VAR_DIR=str(self.workdir),
            HANDOFF_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
            # The machine's PostgreSQL (max_connections 100) is shared with other test runs:
            # 4 per process is plenty.
            DATABASE_POOL_MAX_SIZE="4",
            # Two threads for sync views, not one per connection: as many creates a second as
            # four on 2 cores, half the p99 at concurrency 8 (docs/operations.md, Web threads).
            HANDOFF_WEB_THREADS="2",
        )
        env.update(extra)
        return env

    def start(self, process: harness.Process) -> harness.Process:
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()


# --- set-up -----------------------------------------------------------------------------------

BODY = {
    "queue": "refunds",
    "summary": "Refund of 1,240 EUR exceeds the auto-approve limit",
    "confidence": 0.42,
    "priority": "high",
    "reason": "low_confidence",
    "context": {
        "conversation": [
            {"role": "customer" if i % 2 else "agent", "text": "Where is my refund? " * 10}
            for i in range(8)
        ],
        "order": {"id": "A-77", "lines": list(range(20))},
    },
    "proposed_action": {"type": "refund", "amount": 1240, "currency": "EUR"},
    "external_id": "ticket-8812",
    "metadata": {"tier": "gold", "account_value": 125000},
}


def set_up(bench: Bench) -> None:
    redis, bench.redis_port = harness.redis_server(bench.workdir)
    bench.start(redis)
    os.environ.update(bench.env("handoff_bench_suite", DATABASE_POOL_MAX_SIZE="40"))
    from bench.common import fresh_schema

    fresh_schema(DB)
    from django.contrib.auth.models import User

    from accounts.models import Membership, Role, Team
    from escalation.models import Agent, AgentKey, Queue

    teams = {slug: Team.objects.create(slug=slug, name=slug.title()) for slug in ("ops", "claims")}
    bench.queues = {
        "refunds": Queue.objects.create(slug="refunds", name="Refunds", team=teams["ops"]),
        "claims": Queue.objects.create(slug="claims", name="Claims", team=teams["claims"]),
    }
    unlimited = {"rate_per_second": 1e6, "rate_burst": 10**6, "max_open_cases": 10**8}
    bench.agent = Agent.objects.create(name="bench-agent", all_queues=True, **unlimited)
    bench.bare_agent = Agent.objects.create(name="bench-bare", all_queues=True, **unlimited)
    _, bench.key = AgentKey.generate(bench.agent)
    bench.reviewers = []
    for n in range(max(bench.sizes.reviewers)):
        user = User.objects.create_user(f"reviewer-{n:02d}")
        Membership.objects.create(user=user, team=teams["claims"], role=Role.REVIEWER)
        bench.reviewers.append(user)
    bench.waiter_reviewer = User.objects.create_user("waiter-reviewer")
    Membership.objects.create(user=bench.waiter_reviewer, team=teams["ops"], role=Role.REVIEWER)


def write_files(bench: Bench) -> None:
    """The load generator's inputs: request bodies and the raw floor's INSERT."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from bench.baseline.urls import bare_case

    bench.body = bench.workdir / "body.json"
    bench.body.write_text(json.dumps(BODY))
    bench.batch_body = bench.workdir / "batch.json"
    bench.batch_body.write_text(json.dumps({"items": [BODY] * 100}))
    case = bare_case(BODY, bench.bare_agent.pk, bench.queues["refunds"].pk)
    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        case.save(force_insert=True)
    insert = next(q["sql"] for q in captured.captured_queries if q["sql"].startswith("INSERT"))
    bench.insert_sql = bench.workdir / "insert.sql"
    bench.insert_sql.write_text(insert.replace(case.id.hex, "{ID}"))
    log(f"one create body is {len(json.dumps(BODY))} bytes")


def start_servers(bench: Bench) -> None:
    handoff, bench.port = harness.web_server(
        "web", "handoff.asgi:application", bench.env("handoff_bench_web"), bench.workdir, 2
    )
    bench.start(handoff)
    bare_env = bench.env(
        "handoff_bench_bare",
        DJANGO_SETTINGS_MODULE="bench.baseline.settings",
        BENCH_BASELINE_AGENT_ID=str(bench.bare_agent.pk),
        BENCH_BASELINE_QUEUE_ID=str(bench.queues["refunds"].pk),
    )
    bare, bench.bare_port = harness.web_server(
        "bare", "bench.baseline.asgi:application", bare_env, bench.workdir, 2
    )
    bench.start(bare)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes, for development")
    parser.add_argument("--only", default="", help="comma-separated benchmarks to run")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()
    wanted = set(filter(None, args.only.split(","))) or set(suite.ORDER)
    bench = Bench(QUICK if args.quick else Sizes(), Path(tempfile.mkdtemp(prefix="handoff-bench-")))
    bench.machine = harness.machine()
    bench.mode = "quick" if args.quick else "full"
    log(f"bench ({bench.mode}) on {bench.machine}; logs in {bench.workdir}")
    started = time.monotonic()
    try:
        set_up(bench)
        write_files(bench)
        start_servers(bench)
        for name in suite.ORDER:
            if name in wanted:
                log(f"--- {name}")
                suite.RUNNERS[name](bench)
    finally:
        bench.stop_all()
    bench.results["run_seconds"] = round(time.monotonic() - started)
    (bench.workdir / "results.json").write_text(json.dumps(bench.results, indent=2, default=str))
    print(json.dumps(bench.results, indent=2, default=str))
    if not args.no_write:
        from bench import report

        report.write(bench)
    return 0


if __name__ == "__main__":
    sys.exit(main())
