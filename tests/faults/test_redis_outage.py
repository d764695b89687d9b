"""Redis (broker, cache, wake-ups) lost: while agents post, and while work is pending in it.

The single-case, in-process version of the first is tests/escalation/test_broker_outage.py;
here the agents post to the real web server, a real worker waits for Redis to come back, and
Redis comes back empty (it has no persistence), as a Redis that was lost does.
"""

from __future__ import annotations

import threading
import time

import pytest
import redis

from escalation import audit, transitions
from escalation.audit import Actor
from escalation.models import AuditEvent, Delivery, DeliveryStatus, Escalation, OutboxItem
from tests.delivery.receiver import Receiver
from tests.factories import QueueFactory, make_case
from tests.support import http_json, queued_tasks, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

AGENTS, POSTS_EACH = 4, 10
GOLD = {
    "when": {"field": "metadata.tier", "op": "eq", "value": "gold"},
    "then": {"priority": "high"},
}


def count(verb: str, case_id) -> int:
    return AuditEvent.objects.filter(escalation_id=case_id, verb=verb).count()


def test_cases_posted_while_redis_is_down_are_each_routed_once_when_it_is_back(
    stack, agent, refunds, api_key
):
    """Fault: Redis stopped while 4 agents post 40 cases to the web server.
    Invariant: every post is a 201 within 5 s; /healthz stays 200 and reports the broker
    down, /readyz is 503; once Redis is back (empty), every case is routed exactly once
    (one escalation.routed each, its rule applied), every outbox item done, the chain valid."""
    refunds.routing_rules = [GOLD]
    refunds.save(update_fields=["routing_rules"])
    web = stack.web()
    stack.worker()
    stack.redis.kill()

    health = http_json(web.port, "GET", "/healthz")
    assert health[:2] == (200, {"status": "ok", "database": "ok", "broker": "down"})
    ready = http_json(web.port, "GET", "/readyz")
    assert ready[0] == 503 and ready[1]["broker"] == "down"

    answers: list[tuple[int, dict, float]] = []
    lock = threading.Lock()

    def agent_posts(number: int) -> None:
        for n in range(POSTS_EACH):
            started = time.monotonic()
            status, body, _ = http_json(
                web.port,
                "POST",
                "/api/v1/escalations",
                key=api_key,
                body={
                    "queue": "refunds",
                    "summary": f"agent {number} case {n}",
                    "confidence": 0.4,
                    "context": {},
                    "metadata": {"tier": "gold" if n % 2 else "silver"},
                },
                headers={"Idempotency-Key": f"agent-{number}-{n}"},
            )
            with lock:
                answers.append((status, body, time.monotonic() - started))

    threads = [threading.Thread(target=agent_posts, args=(n,)) for n in range(AGENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == AGENTS * POSTS_EACH
    assert [status for status, _, _ in answers] == [201] * len(answers), answers[:3]
    assert max(elapsed for _, _, elapsed in answers) < 5
    ids = {body["id"] for _, body, _ in answers}
    assert len(ids) == AGENTS * POSTS_EACH
    assert Escalation.objects.filter(pk__in=ids, routed_at__isnull=True).count() == len(ids)

    stack.redis.start()  # back, and empty

    def all_routed() -> bool:
        return not Escalation.objects.filter(pk__in=ids, routed_at__isnull=True).exists()

    assert wait_until(all_routed, timeout=45, interval=0.25), (
        f"{Escalation.objects.filter(pk__in=ids, routed_at__isnull=True).count()} not routed"
    )
    assert wait_until(
        lambda: not OutboxItem.objects.filter(done_at__isnull=True).exists(), timeout=10
    )
    for case in Escalation.objects.filter(pk__in=ids):
        assert count("escalation.routed", case.pk) == 1
        assert count("escalation.created", case.pk) == 1
        assert case.priority == ("high" if case.metadata["tier"] == "gold" else "normal")
    assert Escalation.objects.count() == len(ids)
    assert audit.verify_chain().ok
    assert http_json(web.port, "GET", "/healthz")[1]["broker"] == "ok"
    assert http_json(web.port, "GET", "/readyz")[0] == 200


def test_work_pending_in_a_redis_restarted_without_persistence_is_recovered_from_the_database(
    stack, agent, ops, alice
):
    """Fault: Redis killed (SIGKILL, no persistence) while routing jobs and webhook
    deliveries sit in its queues, a lease is running out and a claim target is passing;
    it comes back empty, then a worker starts.
    Invariant: all of it is done from the database, once: the case routed once, the lease
    returned once, the breach recorded once, the webhook POSTed and recorded as delivered
    once (one webhook-id); the chain verifies."""
    receiver = Receiver((200,)).start()
    try:
        agent.callback_url = receiver.url()
        agent.save(update_fields=["callback_url"])
        queue = QueueFactory(
            slug="fast", team=ops, lease_seconds=2, sla_policy={"normal": {"claim": 2}}
        )
        as_alice = Actor.for_user(alice)
        routed_later = make_case(agent=agent, queue=queue, summary="route me")
        breaching = make_case(agent=agent, queue=queue, summary="claim target passes")
        leased = make_case(agent=agent, queue=queue, summary="lease runs out")
        decided = make_case(agent=agent, queue=queue, summary="webhook owed")
        transitions.claim(actor=as_alice, case_id=leased.pk)
        token = transitions.claim(actor=as_alice, case_id=decided.pk).claim_token
        transitions.resolve(
            actor=as_alice, case_id=decided.pk, claim_token=token, decision="approve"
        )
        broker = redis.Redis.from_url(stack.broker_url)
        routing = set(OutboxItem.objects.filter(kind="route").values_list("pk", flat=True))
        assert len(routing) == 4

        def waiting() -> set:
            queued = queued_tasks(broker, stack.queue)
            return {item for task, ids in queued if "outbox" in task for item in ids}

        # The four routing jobs and the webhook, waiting (the routing jobs are sent by the
        # doorbell thread, a moment after their commits).
        assert wait_until(lambda: routing <= waiting())
        assert any(
            task.endswith("deliver_webhook") for task, _ in queued_tasks(broker, stack.queue)
        )

        stack.redis.kill()
        stack.redis.start()
        assert broker.llen(stack.queue) == 0  # what Redis held is gone
        stack.worker()

        item = Delivery.objects.get(escalation_id=decided.pk)

        def done() -> bool:
            return (
                Delivery.objects.get(pk=item.pk).status == DeliveryStatus.SUCCEEDED
                and Escalation.objects.filter(routed_at__isnull=True).count() == 0
                and count("escalation.lease_expired", leased.pk) == 1
                and count("sla.claim_breached", breaching.pk) == 1
            )

        assert wait_until(done, timeout=30, interval=0.25)
        time.sleep(2)  # two more sweeps and re-drives: they must change nothing
        for case in (routed_later, breaching, leased, decided):
            assert count("escalation.routed", case.pk) == 1
        assert count("escalation.lease_expired", leased.pk) == 1
        assert count("sla.claim_breached", breaching.pk) == 1
        assert Escalation.objects.get(pk=leased.pk).status == "open"
        assert [r.webhook_id for r in receiver.received()] == [item.webhook_id]
        assert count("delivery.succeeded", decided.pk) == 1
        assert audit.verify_chain().ok
    finally:
        receiver.stop()
