"""Webhook delivery under real processes: a `celery worker -B` (prefork) against the test
database and the real Redis broker, posting to a receiver on 127.0.0.1.

The worker consumes a queue name unique to this test (and its "-sweeps" twin); its periodic
`sweep_deliveries` (every second) is what finds each due delivery in the database, exactly as
the spec's "picked up by a periodic task": the test process publishes nothing (its after-commit
rings are made to "fail"). Every broker key of the unique queue is deleted at the end.
"""

from __future__ import annotations

import contextlib
import io
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from escalation import outbox
from escalation.models import Delivery, DeliveryStatus
from tests.delivery.helpers import attempt_log, delivery_of, delivery_verbs, resolve
from tests.delivery.receiver import Reply
from tests.factories import make_case
from tests.support import CeleryWorker, forget_queue, log_tail, wait_until, worker_env

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 4  # the smallest the settings allow above connect (1) + read (2) timeouts
WORKER_ENV = {
    "HANDOFF_SLA_SWEEP_SECONDS": "1",
    "HANDOFF_OUTBOX_REDRIVE_SECONDS": "3600",
    "HANDOFF_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "HANDOFF_WEBHOOK_RETRY_SCHEDULE": "1s,1s",
    "HANDOFF_WEBHOOK_CONNECT_TIMEOUT": "1",
    "HANDOFF_WEBHOOK_READ_TIMEOUT": "2",
    "HANDOFF_WEBHOOK_LEASE_SECONDS": str(LEASE_SECONDS),
    "DJANGO_SECRET_KEY": "test-only",
}


@pytest.fixture
def workers(transactional_db, tmp_path, monkeypatch):
    """start() -> a ready `celery worker -B` (prefork) on this test's unique queue."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (the worker is a second process on the test database)")
    if not settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
        pytest.skip("needs the Redis broker")
    # This process publishes nothing: deliveries wait in the database for the worker's sweep.
    monkeypatch.setattr(outbox, "ring", lambda task, row_id: False)
    queue = f"handoff-test-{uuid.uuid4().hex[:10]}"
    env = worker_env(
        queue=queue,
        var_dir=tmp_path,
        application_name="handoff-delivery-test",
        extra=WORKER_ENV,
        drop=lambda key: key.startswith("HANDOFF_WEB"),
    )
    started: list[CeleryWorker] = []

    def start() -> CeleryWorker:
        number = len(started)
        worker = CeleryWorker(
            env=env,
            queue=queue,
            name=f"{queue}-{number}",
            log_path=tmp_path / f"worker-{number}.log",
            schedule=tmp_path / f"beat-schedule-{number}",
            pool="prefork",
        )
        started.append(worker)
        worker.wait_ready()
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()
        forget_queue(settings.CELERY_BROKER_URL, queue)


@contextlib.contextmanager
def worker_logs_on_failure(*workers_started):
    try:
        yield
    except BaseException:
        for worker in workers_started:
            print(f"--- {worker.log_path.name} ---\n{log_tail(worker.log_path)}")
        raise


def _status(item: Delivery) -> str:
    return Delivery.objects.get(pk=item.pk).status


def test_500_500_200_is_delivered_on_the_third_attempt_with_one_webhook_id(
    workers, hooked_agent, refunds, alice, receiver
):
    receiver.answer(500, 500, 200)
    worker = workers()
    case = make_case(agent=hooked_agent, queue=refunds)
    resolve(case, alice)
    item = delivery_of(case)

    with worker_logs_on_failure(worker):
        assert wait_until(lambda: _status(item) == DeliveryStatus.SUCCEEDED, timeout=25), (
            f"not delivered: {Delivery.objects.get(pk=item.pk).__dict__}"
        )
        requests = receiver.received()
        assert [request.reply.status for request in requests] == [500, 500, 200]
        assert {request.webhook_id for request in requests} == {item.webhook_id}
        for request in requests:
            payload = request.verify(hooked_agent.webhook_secret)
            assert payload["type"] == "escalation.resolved"
            assert payload["data"]["id"] == str(case.pk)
        stamps = [int(request.headers["webhook-timestamp"]) for request in requests]
        assert stamps == sorted(stamps) and stamps[0] < stamps[-1], stamps
        # Retries one schedule step (1 s ± 20 %) apart, give or take a sweep period.
        gaps = [b.at - a.at for a, b in zip(requests, requests[1:], strict=False)]
        assert all(0.75 <= gap <= 4 for gap in gaps), gaps
        assert [(n, code) for n, code, _ in attempt_log(item)] == [(1, 500), (2, 500), (3, 200)]
        assert delivery_verbs(case) == ["delivery.failed", "delivery.failed", "delivery.succeeded"]


def test_a_receiver_that_never_succeeds_makes_it_dead_and_redeliver_sends_it(
    workers, hooked_agent, refunds, alice, receiver
):
    receiver.answer(500)
    worker = workers()
    case = make_case(agent=hooked_agent, queue=refunds)
    resolve(case, alice)
    item = delivery_of(case)

    with worker_logs_on_failure(worker):
        assert wait_until(lambda: _status(item) == DeliveryStatus.DEAD, timeout=25)
        dead = Delivery.objects.get(pk=item.pk)
        assert dead.attempts == 3 and dead.last_status_code == 500
        assert delivery_verbs(case) == ["delivery.failed"] * 3 + ["delivery.dead"]
        assert len(receiver.received()) == 3

        receiver.answer(200)
        call_command("redeliver", dead=True, stdout=io.StringIO())

        assert wait_until(lambda: _status(item) == DeliveryStatus.SUCCEEDED, timeout=15)
        requests = receiver.received()
        assert len(requests) == 4
        assert {request.webhook_id for request in requests} == {item.webhook_id}
        requests[-1].verify(hooked_agent.webhook_secret)
        assert delivery_verbs(case)[-2:] == ["delivery.redelivered", "delivery.succeeded"]


def test_a_worker_killed_mid_attempt_is_recovered_once_the_lease_runs_out(
    workers, hooked_agent, refunds, alice, receiver
):
    # The first request hangs long enough for the worker to be killed while it waits.
    receiver.answer(Reply(200, delay=1.5), 200)
    first_worker = workers()
    case = make_case(agent=hooked_agent, queue=refunds)
    resolve(case, alice)
    item = delivery_of(case)

    with worker_logs_on_failure(first_worker):
        assert wait_until(lambda: len(receiver.received()) >= 1, timeout=15, interval=0.01)
        first_worker.kill()

        held = Delivery.objects.get(pk=item.pk)
        assert held.status == DeliveryStatus.PENDING and held.attempts == 0
        assert held.locked_until is not None, "the attempt in progress held no lease"
        first = receiver.received()[0]
        lease_ends = held.locked_until.timestamp()
        assert 0 < lease_ends - first.at <= LEASE_SECONDS + 0.5

    second_worker = workers()
    with worker_logs_on_failure(first_worker, second_worker):
        assert wait_until(lambda: _status(item) == DeliveryStatus.SUCCEEDED, timeout=25)
        requests = receiver.received()
        assert len(requests) == 2, [(r.at, r.reply) for r in requests]
        assert {request.webhook_id for request in requests} == {item.webhook_id}
        for request in requests:
            request.verify(hooked_agent.webhook_secret)
        # Picked up again only once the killed attempt's lease had run out.
        assert requests[1].at >= lease_ends - 0.05, (requests[1].at, lease_ends)
        done = Delivery.objects.get(pk=item.pk)
        assert done.attempts == 1 and done.last_status_code == 200
        assert delivery_verbs(case) == ["delivery.succeeded"]
