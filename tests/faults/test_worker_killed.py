"""A Celery worker killed with SIGKILL in the middle of an expiry sweep and of the webhook
attempts it caused, then another worker takes over.

(One delivery killed mid-attempt, its lease and its retry timing: tests/delivery/test_worker.py.)
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from escalation import audit
from escalation.models import AuditEvent, Delivery, DeliveryStatus, Escalation, Status
from tests.delivery.receiver import Receiver, Reply
from tests.factories import QueueFactory, make_case
from tests.support import events_per_case, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

CASES, HOOKED = 200, 30


def test_a_worker_killed_mid_sweep_and_mid_delivery_leaves_nothing_undone_or_done_twice(
    stack, agent, ops
):
    """Fault: SIGKILL to the worker (main process, pool, beat) while its expiry sweep is
    part-way through 200 due cases; then to the next worker while the webhooks those expiries
    owe are in flight; then a third worker.
    Invariant: every case expired exactly once (one escalation.expired, no other state
    change), one Delivery per hooked case, every one delivered and recorded once
    (delivery.succeeded once; the receiver saw every webhook-id, a second time only for an
    attempt the kill cut short); every case routed once; the chain verifies."""
    receiver = Receiver((Reply(200, delay=0.3),)).start()
    try:
        queue = QueueFactory(slug="closing", team=ops)
        for n in range(CASES):
            make_case(
                agent=agent,
                queue=queue,
                summary=f"case {n}",
                callback_url=receiver.url() if n < HOOKED else "",
            )
        ids = set(Escalation.objects.values_list("pk", flat=True))
        # Re-drives every 5 s rather than every second: routing 200 cases takes a few seconds,
        # and each re-drive re-sends every item not yet done.
        first = stack.worker(HANDOFF_OUTBOX_REDRIVE_SECONDS="5")
        assert wait_until(
            lambda: not Escalation.objects.filter(routed_at__isnull=True).exists(), timeout=30
        )
        # Then every case comes due at once, the hooked ones first (the sweep goes by
        # expires_at).
        past = timezone.now() - timedelta(minutes=5)
        with transaction.atomic():
            Escalation.objects.update(expires_at=past)
            Escalation.objects.exclude(callback_url="").update(expires_at=past - timedelta(1))
        expired = Escalation.objects.filter(status=Status.EXPIRED)
        assert wait_until(lambda: expired.exists(), timeout=20, interval=0.01)
        first.kill()
        at_kill = expired.count()
        assert 0 < at_kill < CASES, f"not killed mid-sweep ({at_kill} of {CASES} expired)"
        time.sleep(1)
        assert expired.count() == at_kill  # the killed worker's transactions were rolled back

        # The next worker finishes the sweep and starts the webhooks: killed in the middle of
        # those (each receiver answer takes 0.3 s).
        second = stack.worker(HANDOFF_OUTBOX_REDRIVE_SECONDS="5")
        succeeded = Delivery.objects.filter(status=DeliveryStatus.SUCCEEDED)
        assert wait_until(lambda: succeeded.exists(), timeout=30, interval=0.01)
        second.kill()
        assert succeeded.count() < HOOKED, "not killed mid-delivery"
        in_flight = len(receiver.received()) - succeeded.count()

        stack.worker(HANDOFF_OUTBOX_REDRIVE_SECONDS="5")
        assert wait_until(lambda: expired.count() == CASES, timeout=40, interval=0.25)
        assert wait_until(lambda: succeeded.count() == HOOKED, timeout=30, interval=0.25)
        time.sleep(2)  # further sweeps and re-drives change nothing

        assert events_per_case("escalation.expired") == dict.fromkeys(ids, 1)
        assert events_per_case("escalation.routed") == dict.fromkeys(ids, 1)
        moves = AuditEvent.objects.filter(verb__startswith="escalation.").exclude(
            verb__in=["escalation.created", "escalation.routed", "escalation.expired"]
        )
        assert not moves.exists(), list(moves.values_list("verb", flat=True))
        deliveries = dict(Delivery.objects.values_list("webhook_id", "escalation_id"))
        assert len(deliveries) == HOOKED
        assert events_per_case("delivery.succeeded") == dict.fromkeys(set(deliveries.values()), 1)
        sent = [request.webhook_id for request in receiver.received()]
        assert set(sent) == set(deliveries)
        # At-least-once: an attempt the kill cut short is sent again (same webhook-id); only
        # those the killed pool was running.
        assert len(sent) - len(set(sent)) <= min(in_flight, 2), sorted(sent)
        assert audit.verify_chain().ok
    finally:
        receiver.stop()
