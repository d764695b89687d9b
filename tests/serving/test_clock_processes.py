"""The clocks under real processes: a Celery worker with embedded beat, on a queue of its own,
against the test database, records a missed claim target shortly after its due time, expires
the case at its horizon, and re-drives an outbox item whose after-commit send was lost.

The worker consumes a queue name unique to this run (and its "-sweeps" twin), so nothing else
on this Redis consumes its messages or is disturbed by them; its keys are deleted at the end.
The test process publishes nothing: its after-commit send is made to "fail" (broker down), so
the route item is left for the worker's periodic re-drive.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from escalation import outbox
from escalation.audit import verify_chain
from escalation.models import AuditEvent, Escalation, OutboxItem
from tests.factories import QueueFactory, make_case
from tests.support import CeleryWorker, forget_queue, log_tail, wait_until, worker_env

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
CLAIM_SECONDS, RESOLVE_SECONDS, EXPIRE_SECONDS = 3, 6, 10
SWEEP_SECONDS = 2
# "Shortly after its due time": a sweep every 2 s, with room for a slow machine.
BREACH_LATENESS_BOUND = 10.0


@pytest.fixture
def clock_worker(transactional_db, tmp_path):
    """A real `celery worker -B` on a unique queue; yields (queue name, log path)."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (the worker is a second process on the test database)")
    if not settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
        pytest.skip("needs the Redis broker")
    queue = f"handoff-test-{uuid.uuid4().hex[:10]}"
    env = worker_env(
        queue=queue,
        var_dir=tmp_path,
        application_name="handoff-clock-test",
        extra={
            "HANDOFF_SLA_SWEEP_SECONDS": str(SWEEP_SECONDS),
            "HANDOFF_OUTBOX_REDRIVE_SECONDS": str(SWEEP_SECONDS),
            "HANDOFF_OUTBOX_GRACE_SECONDS": "1",
        },
    )
    worker = CeleryWorker(
        env=env,
        queue=queue,
        name=queue,
        log_path=tmp_path / "worker.log",
        schedule=tmp_path / "beat-schedule",
        pool="threads",
    )
    try:
        worker.wait_ready()
        yield queue, worker.log_path
    finally:
        worker.stop()
        forget_queue(settings.CELERY_BROKER_URL, queue)


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
        print(f"--- worker log ({queue_name}) ---\n{log_tail(log_path)}")
        raise
