"""Two sweepers over the same due work, and 200 writers appending to the audit chain at once.

(The two-sweepers race on SLA breaches is tests/escalation/test_sweeps.py; here the other
clocks: lease expiry, case expiry, and the webhook attempts the expiries owe.)
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from escalation import audit, delivery, sweeps, transitions
from escalation.audit import Actor
from escalation.models import AuditChainHead, AuditEvent, Delivery, DeliveryStatus, Escalation
from tests.delivery.receiver import Receiver
from tests.factories import QueueFactory, make_case
from tests.support import at_once, events_per_case

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver():
    receiver = Receiver((200,)).start()
    yield receiver
    receiver.stop()


def test_two_sweepers_return_each_lease_expire_each_case_and_send_each_webhook_once(
    settings, monkeypatch, agent, ops, refunds, as_alice, receiver
):
    """Race: two sweepers at once over 20 run-out leases and 20 cases past their horizon,
    then two workers attempting every due delivery at once.
    Invariant: one escalation.lease_expired per lease, one escalation.expired and one
    Delivery per expired case, each webhook POSTed exactly once (the attempt's lease keeps
    the second worker off), one delivery.succeeded each; the chain verifies."""
    settings.HANDOFF_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.HANDOFF_WEBHOOK_CONNECT_TIMEOUT = settings.HANDOFF_WEBHOOK_READ_TIMEOUT = 2
    monkeypatch.setattr(delivery, "ring", lambda delivery_id: False)  # the sweepers send
    agent.callback_url = receiver.url()
    agent.save(update_fields=["callback_url"])
    short = QueueFactory(slug="short", team=ops, expire_after_seconds=3600)
    now = timezone.now()
    leased = [make_case(agent=agent, queue=refunds) for _ in range(20)]
    for case in leased:
        transitions.claim(actor=as_alice, case_id=case.pk)
    Escalation.objects.filter(pk__in=[c.pk for c in leased]).update(
        lease_expires_at=now - timedelta(seconds=1)
    )
    expiring = [
        make_case(agent=agent, queue=short, now=now - timedelta(hours=2)) for _ in range(20)
    ]

    def sweeper() -> tuple[int, int]:
        return sweeps.sweep_leases(), sweeps.sweep_expiry()

    swept = at_once([sweeper, sweeper])

    assert all(isinstance(result, tuple) for result in swept), swept
    assert sum(leases for leases, _ in swept) == 20
    assert sum(expiries for _, expiries in swept) == 20
    assert events_per_case("escalation.lease_expired") == {c.pk: 1 for c in leased}
    assert events_per_case("escalation.expired") == {c.pk: 1 for c in expiring}
    deliveries = list(Delivery.objects.values_list("pk", "escalation_id"))
    assert sorted(case_id for _, case_id in deliveries) == sorted(c.pk for c in expiring)

    def worker() -> list[str]:
        return [delivery.attempt(pk) for pk in delivery.due_deliveries(timezone.now(), 100)]

    attempts = at_once([worker, worker])

    assert all(isinstance(result, list) for result in attempts), attempts
    outcomes = attempts[0] + attempts[1]
    assert outcomes.count("succeeded") == 20, outcomes
    assert set(outcomes) <= {"succeeded", "skipped"}
    sent = [request.webhook_id for request in receiver.received()]
    assert sorted(sent) == sorted(Delivery.objects.values_list("webhook_id", flat=True))
    assert Delivery.objects.filter(status=DeliveryStatus.SUCCEEDED).count() == 20
    assert events_per_case("delivery.succeeded") == {c.pk: 1 for c in expiring}
    assert audit.verify_chain().ok


def test_200_concurrent_writers_never_fork_the_audit_chain(
    monkeypatch, agent, refunds, support, as_alice
):
    """Race: 200 transactions at once that each append audit events: single creates, batch
    creates of three (one lock, many events), claims and context updates.
    Invariant: verify_chain passes, sequence numbers are 1..N without a gap or a repeat, each
    event's prev_hash is the hash of the one before, the head names the last, and exactly the
    events of the successful writes are there."""
    open_cases = [make_case(agent=agent, queue=refunds) for _ in range(50)]
    before = AuditEvent.objects.count()
    as_agent = Actor.for_agent(agent)

    def create_one():
        return [make_case(agent=agent, queue=support)]

    def create_three():
        with transaction.atomic():  # as the batch endpoint does
            intake = transitions.Intake(actor=as_agent, agent=agent, expected=3)
            for n in range(3):
                intake.add(queue=refunds, summary=f"batch {n}", confidence=0.5, context={})
            return intake.save()

    def claim(case_id):
        return transitions.claim(actor=as_alice, case_id=case_id)

    def add_context(case_id):
        return transitions.append_context(actor=as_agent, case_id=case_id, note="more")

    calls = (
        [create_one] * 50
        + [create_three] * 50
        + [lambda pk=c.pk: claim(pk) for c in open_cases]
        + [lambda pk=c.pk: add_context(pk) for c in open_cases]
    )

    # At most the pool's connections are in a transaction at once (as in production, where
    # the pool bounds each process); the other writers wait their turn for a connection, and
    # behind the chain head that wait can pass the pool's 10 s. It is the chain that is on
    # trial here, not the pool's patience.
    monkeypatch.setattr(connection.pool, "timeout", 90)
    started = time.monotonic()
    results = at_once(calls, timeout=120)
    elapsed = time.monotonic() - started

    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors[:3]
    # 200 new cases, each created and then routed (the eager outbox routes after commit, in
    # the writer's thread), 50 claims, 50 context updates.
    expected = before + 200 * 2 + 50 + 50
    events = list(AuditEvent.objects.order_by("seq").values_list("seq", "prev_hash", "hash"))
    assert len(events) == expected
    assert [seq for seq, _, _ in events] == list(range(1, expected + 1))
    for (_, _, previous_hash), (_, prev_hash, _) in zip(events, events[1:], strict=False):
        assert prev_hash == previous_hash
    head = AuditChainHead.objects.get(pk=1)
    assert (head.seq, head.hash) == (events[-1][0], events[-1][2])
    assert audit.verify_chain().ok
    print(f"{len(calls)} writers, {expected - before} events in {elapsed:.1f} s")
