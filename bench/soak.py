"""`make soak`: ten minutes of steady work under faults, then the invariants, checked and printed.

Everything runs on 127.0.0.1 and is started and stopped here by PID: a PostgreSQL database of
its own (`handoff_soak`, re-created), a redis-server of its own on a free port, the web server
(gunicorn + uvicorn), a Celery worker with embedded beat, and a webhook receiver that answers
20 % of requests with a 500. Agents post at a steady rate (each with an Idempotency-Key),
reviewers work the inbox through the web endpoints (sign in, Next case, read the case, Approve),
and the worker is SIGKILLed and replaced every minute. Web and worker memory (RSS of each
process group) is sampled every minute.

At the end (after a drain of at most SOAK_DRAIN_SECONDS for webhooks still retrying) it checks:
every acknowledged case exists once; every case is terminal, or open/claimed by design (routed,
inside its horizon, its follow-up work done); every resolved case's webhook arrived (a 2xx) at
least once; one created / routed / resolved event per case; the audit chain verifies; web RSS
stayed flat. It prints each invariant and exits 1 if one fails.

    SOAK_SECONDS=600 SOAK_RATE=3 SOAK_REVIEWERS=3 python bench/soak.py
"""

from __future__ import annotations

import os
import random
import re
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import fresh_schema, use_database  # noqa: E402

DB = "handoff_soak"
SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))
RATE = float(os.environ.get("SOAK_RATE", "3"))  # cases posted per second
REVIEWERS = int(os.environ.get("SOAK_REVIEWERS", "3"))
KILL_EVERY = int(os.environ.get("SOAK_KILL_EVERY", "60"))
DRAIN = int(os.environ.get("SOAK_DRAIN_SECONDS", "120"))
PASSWORD = "soak-reviewer-password"
RSS_GROWTH_LIMIT = 1.25  # last sample over the first after warm-up, plus 20 MiB of slack
RSS_SLACK_KB = 20 * 1024


def rss_kb(pgid: int) -> int:
    """Resident memory of every process in a process group (the gunicorn arbiter and its
    worker; the Celery main process, its pool and beat)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:  # field 5 of stat: the process group
                continue
            status = (stat.parent / "status").read_text()
        except (OSError, IndexError, ValueError):
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        total += int(match.group(1)) if match else 0
    return total


class Reviewer:
    """A person at the inbox: signs in, presses Next case, reads the case, approves."""

    def __init__(self, base: str, username: str) -> None:
        import requests

        self.base, self.session = base, requests.Session()
        page = self.session.get(f"{base}/accounts/login/", timeout=10)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        signed_in = self.session.post(
            f"{base}/accounts/login/",
            data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token},
            headers={"Referer": f"{base}/accounts/login/"},
            allow_redirects=False,
            timeout=10,
        )
        assert signed_in.status_code == 302, signed_in.status_code
        self.decided = 0
        self.errors = 0

    def _post(self, path: str, data: dict | None = None):
        return self.session.post(
            f"{self.base}{path}",
            data=data or {},
            headers={
                "X-CSRFToken": self.session.cookies.get("csrftoken", ""),
                "Referer": f"{self.base}/inbox/",
            },
            allow_redirects=False,
            timeout=15,
        )

    def work_one(self) -> bool:
        """One case: False when the inbox was empty."""
        pressed = self._post("/inbox/next/")
        where = pressed.headers.get("Location", "")
        if not where.startswith("/cases/"):
            return False
        page = self.session.get(f"{self.base}{where}", timeout=15)
        token = re.search(r'name="claim_token" value="([0-9a-f-]{36})"', page.text)
        if token is None:
            self.errors += 1
            return True
        time.sleep(random.uniform(0.2, 1.0))  # reading the case
        decided = self._post(
            f"{where}decide/",
            {"claim_token": token.group(1), "decision": "approve", "note": "soak"},
        )
        if decided.status_code == 302:
            self.decided += 1
        else:
            self.errors += 1
        return True


def main() -> int:
    use_database(DB)
    os.environ.setdefault("DJANGO_DEBUG", "0")
    os.environ["DJANGO_ALLOWED_HOSTS"] = "127.0.0.1,localhost,testserver"
    fresh_schema(DB)

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from accounts.models import Membership, Role, Team
    from escalation import audit
    from escalation.models import (
        Agent,
        AgentKey,
        Delivery,
        DeliveryStatus,
        Escalation,
        OutboxItem,
        Queue,
    )
    from escalation.models.cases import TERMINAL_STATUSES
    from tests.delivery.receiver import Receiver, Reply
    from tests.support import (
        CeleryWorker,
        RedisServer,
        WebServer,
        events_per_case,
        http_json,
        worker_env,
    )

    work = Path(tempfile.mkdtemp(prefix="handoff-soak-"))
    print(f"soak: {SECONDS} s, {RATE}/s, {REVIEWERS} reviewers, logs in {work}", flush=True)

    class FlakyReceiver(Receiver):
        def _next_reply(self) -> Reply:
            return Reply(500 if random.random() < 0.2 else 200)

    receiver = FlakyReceiver().start()
    redis_server = RedisServer(work).start()
    team = Team.objects.create(slug="ops", name="Ops")
    Queue.objects.create(
        slug="refunds", name="Refunds", team=team, lease_seconds=120, expire_after_seconds=86400
    )
    users = get_user_model()
    for n in range(REVIEWERS):
        user = users.objects.create_user(f"soak{n}", password=PASSWORD)
        Membership.objects.create(user=user, team=team, role=Role.REVIEWER)
    agent = Agent.objects.create(name="soak-agent", all_queues=True, callback_url=receiver.url())
    _, key = AgentKey.generate(agent)

    extra = {
        "HANDOFF_SLA_SWEEP_SECONDS": "2",
        "HANDOFF_OUTBOX_REDRIVE_SECONDS": "5",
        "HANDOFF_OUTBOX_GRACE_SECONDS": "5",
        "HANDOFF_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "HANDOFF_WEBHOOK_RETRY_SCHEDULE": "1s,2s,5s,10s,20s,30s,60s,60s",
        "HANDOFF_WEBHOOK_CONNECT_TIMEOUT": "2",
        "HANDOFF_WEBHOOK_READ_TIMEOUT": "3",
        "HANDOFF_WEBHOOK_LEASE_SECONDS": "10",
        "DATABASE_POOL_MAX_SIZE": "4",
        "HANDOFF_LOG_LEVEL": "WARNING",
    }

    def env(role: str) -> dict:
        return worker_env(
            queue=settings.CELERY_TASK_DEFAULT_QUEUE,
            var_dir=work,
            application_name=f"handoff-soak-{role}",
            extra=extra,
            broker_url=redis_server.url(1),
            redis_url=redis_server.url(0),
        )

    web = WebServer(env=env("web"), log_path=work / "web.log").start()
    base = f"http://127.0.0.1:{web.port}"
    workers: list[CeleryWorker] = []

    def start_worker() -> CeleryWorker:
        number = len(workers)
        worker = CeleryWorker(
            env=env("worker"),
            queue=settings.CELERY_TASK_DEFAULT_QUEUE,
            name=f"soak-{number}",
            log_path=work / f"worker-{number}.log",
            schedule=work / f"beat-schedule-{number}",
            pool="prefork",
        )
        worker.wait_ready()
        workers.append(worker)
        return worker

    start_worker()
    stop = threading.Event()
    acknowledged: dict[str, str] = {}  # idempotency key -> case id
    post_failures: list[tuple[str, object]] = []
    reviewers: list[Reviewer] = []
    samples: list[tuple[int, int, int]] = []  # (minute, web RSS kB, worker RSS kB)

    def agents() -> None:
        n = 0
        next_at = time.monotonic()
        while not stop.is_set():
            n += 1
            idempotency_key = f"soak-{n}"
            body = {
                "queue": "refunds",
                "summary": f"soak case {n}",
                "confidence": round(random.random(), 3),
                "context": {"conversation": [{"role": "customer", "text": "x" * 200}]},
                "proposed_action": {"type": "refund", "amount": n},
            }
            for _ in range(5):  # an agent retries a failed post with the same key
                try:
                    status, answer, _ = http_json(
                        web.port,
                        "POST",
                        "/api/v1/escalations",
                        key=key,
                        body=body,
                        headers={"Idempotency-Key": idempotency_key},
                    )
                except OSError as exc:
                    status, answer = 0, {"error": str(exc)}
                if status in (200, 201):
                    acknowledged[idempotency_key] = answer["id"]
                    break
                post_failures.append((idempotency_key, status))
                time.sleep(1)
            next_at += 1 / RATE
            stop.wait(max(0.0, next_at - time.monotonic()))

    def reviewer(username: str) -> None:
        person = Reviewer(base, username)
        reviewers.append(person)
        while not stop.is_set():
            try:
                if not person.work_one():
                    stop.wait(1.0)
            except Exception:  # noqa: BLE001 - counted; a reviewer reloads and carries on
                person.errors += 1
                stop.wait(1.0)

    threads = [threading.Thread(target=agents, daemon=True)] + [
        threading.Thread(target=reviewer, args=(f"soak{n}",), daemon=True) for n in range(REVIEWERS)
    ]
    for thread in threads:
        thread.start()

    started = time.monotonic()
    minute = 0
    kills = 0
    while time.monotonic() - started < SECONDS:
        time.sleep(min(KILL_EVERY, SECONDS - (time.monotonic() - started)))
        minute += 1
        samples.append((minute, rss_kb(web.process.pid), rss_kb(workers[-1].process.pid)))
        print(
            f"soak: minute {minute}: {len(acknowledged)} posted, "
            f"{sum(r.decided for r in reviewers)} decided, web RSS {samples[-1][1] // 1024} MiB, "
            f"worker RSS {samples[-1][2] // 1024} MiB",
            flush=True,
        )
        if time.monotonic() - started < SECONDS:
            workers[-1].kill()
            kills += 1
            start_worker()
    stop.set()
    for thread in threads:
        thread.join(timeout=30)

    # Drain: webhooks of the last decisions, still retrying against the flaky receiver.
    deadline = time.monotonic() + DRAIN
    while time.monotonic() < deadline:
        pending = Delivery.objects.filter(status=DeliveryStatus.PENDING).count()
        undone = OutboxItem.objects.filter(done_at__isnull=True).count()
        if not pending and not undone:
            break
        time.sleep(2)

    ok_webhooks = {r.webhook_id for r in receiver.received() if 200 <= r.reply.status < 300}
    cases = Escalation.objects.values("id", "status", "routed_at", "expires_at", "lease_expires_at")
    by_id = {str(case["id"]): case for case in cases}
    now = timezone.now()
    stale_lease = now - timedelta(seconds=10)  # a sweep runs every 2 s

    def counts(verb: str) -> dict:
        return {str(case_id): n for case_id, n in events_per_case(verb).items()}

    resolved = {cid for cid, case in by_id.items() if case["status"] == "resolved"}
    resolved_deliveries = dict(
        Delivery.objects.filter(escalation__status="resolved").values_list(
            "escalation_id", "webhook_id"
        )
    )
    not_by_design = [
        cid
        for cid, case in by_id.items()
        if case["status"] not in TERMINAL_STATUSES
        and (
            case["routed_at"] is None
            or case["expires_at"] <= now
            or (case["status"] == "claimed" and case["lease_expires_at"] < stale_lease)
        )
    ]
    warm = samples[1] if len(samples) > 1 else samples[0]
    web_flat = samples[-1][1] <= warm[1] * RSS_GROWTH_LIMIT + RSS_SLACK_KB
    worker_flat = samples[-1][2] <= max(s[2] for s in samples[:2]) * RSS_GROWTH_LIMIT + RSS_SLACK_KB
    invariants = [
        (
            "every acknowledged case exists, once per Idempotency-Key",
            set(acknowledged.values()) <= set(by_id) and len(by_id) == len(acknowledged),
            f"{len(acknowledged)} acknowledged, {len(by_id)} in the database",
        ),
        (
            "every case is terminal or open by design (routed, inside its horizon, a live claim)",
            not not_by_design,
            f"{len(not_by_design)} not: {not_by_design[:3]}",
        ),
        (
            "one escalation.created and one escalation.routed per case",
            counts("escalation.created") == dict.fromkeys(by_id, 1)
            and counts("escalation.routed") == dict.fromkeys(by_id, 1),
            "",
        ),
        (
            "one escalation.resolved per resolved case, and nothing decided twice",
            counts("escalation.resolved") == dict.fromkeys(resolved, 1),
            f"{len(resolved)} resolved",
        ),
        (
            "every resolved case's webhook arrived (2xx) at least once",
            {str(k) for k in resolved_deliveries} == resolved
            and set(resolved_deliveries.values()) <= ok_webhooks,
            f"{len(set(resolved_deliveries.values()) - ok_webhooks)} missing; receiver saw "
            f"{len(receiver.received())} requests, "
            f"{sum(r.reply.status == 500 for r in receiver.received())} answered 500",
        ),
        ("the audit chain verifies", audit.verify_chain().ok, ""),
        (
            "web RSS stayed flat",
            web_flat,
            " ".join(f"{s[1] // 1024}" for s in samples) + " MiB",
        ),
        (
            "worker RSS stayed flat (a fresh worker each minute)",
            worker_flat,
            " ".join(f"{s[2] // 1024}" for s in samples) + " MiB",
        ),
    ]

    health = http_json(web.port, "GET", "/healthz")[1]
    for worker in workers:
        worker.stop()
    web.stop()
    redis_server.kill()
    receiver.stop()

    print(
        f"\nsoak: {SECONDS} s, {len(acknowledged)} cases posted ({len(post_failures)} retried "
        f"posts), {sum(r.decided for r in reviewers)} decided by {REVIEWERS} reviewers "
        f"({sum(r.errors for r in reviewers)} refused or failed actions), {kills} worker kills, "
        f"healthz {health}"
    )
    failed = 0
    for name, held, detail in invariants:
        failed += not held
        print(f"  {'PASS' if held else 'FAIL'}  {name}" + (f"  ({detail})" if detail else ""))
    print(f"soak: {'all invariants hold' if not failed else f'{failed} invariant(s) FAILED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
