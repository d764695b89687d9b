"""The clocks under real processes: a Celery worker with embedded beat, on a queue of its own,
against the test database, records a missed claim target shortly after its due time, expires
the case at its horizon, and re-drives an outbox item whose after-commit send was lost.

The worker consumes a queue name unique to this run (and its "-sweeps" twin), so nothing else
on this Redis consumes its messages or is disturbed by them; its keys are deleted at the end.
The test process publishes nothing: its after-commit send is made to "fail" (broker down), so
the route item is left for the worker's periodic re-drive.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from escalation import outbox
from escalation.audit import verify_chain
from escalation.models import AuditEvent, Escalation, OutboxItem
from tests.factories import QueueFactory, make_case
from tests.support import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
CLAIM_SECONDS, RESOLVE_SECONDS, EXPIRE_SECONDS = 3, 6, 10
SWEEP_SECONDS = 2
# "Shortly after its due time": a sweep every 2 s, with room for a slow machine.
BREACH_LATENESS_BOUND = 10.0


def _database_url() -> str:
    db = connection.settings_dict
    credentials = quote(db["USER"] or "postgres")
    if db.get("PASSWORD"):
        credentials += f":{quote(db['PASSWORD'])}"
    return (
        f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        "?application_name=handoff-clock-test"
    )


def _log_tail(path: Path, lines: int = 80) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no worker log)"


def _forget_queue(broker_url: str, queue: str) -> None:
    """Delete every broker key of this run's queues: the lists, their bindings, and any
    unacknowledged message still parked for them (a worker killed mid-task)."""
    import redis

    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(broker_url, socket_connect_timeout=1)
        mark = queue.encode()
        for key in client.scan_iter(match=f"*{queue}*"):
            client.delete(key)
        for key in client.scan_iter(match="_kombu.binding.*"):
            stale = [member for member in client.smembers(key) if mark in member]
            if stale:
                client.srem(key, *stale)
        for tag, message in client.hscan_iter("unacked"):
            if mark in message:
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)
        # kombu keeps a deadline per fanout binding table (the worker's control exchange);
        # one whose table is now gone is left over from this worker alone.
        for exchange in client.zrange("_kombu.binding_deadlines", 0, -1):
            if not client.exists(b"_kombu.binding." + exchange):
                client.zrem("_kombu.binding_deadlines", exchange)


@pytest.fixture
def clock_worker(transactional_db, tmp_path):
    """A real `celery worker -B` on a unique queue; yields (queue name, log path)."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (the worker is a second process on the test database)")
    broker_url = settings.CELERY_BROKER_URL
    if not broker_url.startswith(("redis://", "rediss://")):
        pytest.skip("needs the Redis broker")
    queue = f"handoff-test-{uuid.uuid4().hex[:10]}"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"HANDOFF_SWEEP_QUEUE", "EMAIL_URL"}  # console mail, derived sweep queue
    }
    env.update(
        {
            "DATABASE_URL": _database_url(),
            "CELERY_BROKER_URL": broker_url,
            "REDIS_URL": settings.REDIS_URL,
            "HANDOFF_CACHE_PREFIX": settings.CACHES["default"].get("KEY_PREFIX", "handoff"),
            "HANDOFF_TASK_QUEUE": queue,
            "HANDOFF_SLA_SWEEP_SECONDS": str(SWEEP_SECONDS),
            "HANDOFF_OUTBOX_REDRIVE_SECONDS": str(SWEEP_SECONDS),
            "HANDOFF_OUTBOX_GRACE_SECONDS": "1",
            "HANDOFF_VAR_DIR": str(tmp_path),
            "DJANGO_SECRET_KEY": "test-only",
        }
    )
    log_path = tmp_path / "worker.log"
    celery = Path(sys.executable).parent / "celery"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(celery),
                "-A",
                "handoff",
                "worker",
                "-B",
                "-l",
                "info",
                "--pool",
                "threads",
                "--concurrency",
                "2",
                "-Q",
                f"{queue},{queue}-sweeps",
                "-n",
                f"{queue}@%h",  # its control queue then carries the unique name too
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-s",
                str(tmp_path / "beat-schedule"),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def ready() -> bool:
            assert process.poll() is None, f"worker exited:\n{_log_tail(log_path)}"
            text = log_path.read_text(errors="replace")
            return " ready." in text and "beat: Starting" in text

        assert wait_until(ready, timeout=30, interval=0.2), (
            f"worker did not start:\n{_log_tail(log_path)}"
        )
        yield queue, log_path
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        _forget_queue(broker_url, queue)


def _events(case, verb: str) -> int:
    return AuditEvent.objects.filter(escalation_id=case.pk, verb=verb).count()


def test_worker_with_beat_breaches_expires_and_redrives_on_its_own_queue(
    clock_worker, agent, ops, monkeypatch
):
    queue_name, log_path = clock_worker
    refunds = QueueFactory(
        slug="refunds",
        team=ops,
        sla_policy={"normal": {"claim": CLAIM_SECONDS, "resolve": RESOLVE_SECONDS}},
        expire_after_seconds=EXPIRE_SECONDS,
    )
    # The broker is "down" for this process: the route item is left to the worker's re-drive
    # (and nothing is published to a queue no worker of this test consumes).
    monkeypatch.setattr(outbox, "send", lambda item_id: False)
    started = time.monotonic()
    case = make_case(agent=agent, queue=refunds)
    assert case.routed_at is None

    def fresh() -> Escalation:
        return Escalation.objects.get(pk=case.pk)

    try:
        assert wait_until(lambda: fresh().routed_at is not None, timeout=30, interval=0.2), (
            "the worker did not re-drive the route item"
        )
        assert wait_until(
            lambda: fresh().claim_breached_at is not None, timeout=30, interval=0.2
        ), "no claim breach recorded"
        breached = fresh()
        assert _events(case, "sla.claim_breached") == 1
        lateness = (breached.claim_breached_at - breached.claim_due_at).total_seconds()
        assert 0 <= lateness <= BREACH_LATENESS_BOUND, lateness

        assert wait_until(lambda: fresh().status == "expired", timeout=30, interval=0.2), (
            "the case did not expire"
        )
        expired = fresh()
        assert _events(case, "escalation.expired") == 1
        assert expired.closed_at >= expired.expires_at
        # Open for 10 s against a 6 s resolve target: that miss is recorded too, once.
        assert _events(case, "sla.resolve_breached") == 1
        assert _events(case, "escalation.routed") == 1
        assert OutboxItem.objects.filter(escalation_id=case.pk, done_at__isnull=True).count() == 0
        assert verify_chain().ok
        assert time.monotonic() - started < 45
    except BaseException:
        print(f"--- worker log ({queue_name}) ---\n{_log_tail(log_path)}")
        raise
