"""A case accepted while the broker is unreachable is routed once the broker is back.

The broker is the machine's Redis behind a TCP proxy this test owns, under a key prefix of its
own: stopping the proxy makes the broker unreachable for this test alone.
"""

from __future__ import annotations

import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.test import Client

from escalation import sweeps
from escalation.models import AuditEvent, Escalation, OutboxItem
from tests.factories import make_case
from tests.support import TcpProxy, celery_broker, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def redis_port() -> int:
    from urllib.parse import urlparse

    return urlparse(settings.CELERY_BROKER_URL).port or 6379


@pytest.fixture
def proxy():
    proxy = TcpProxy("127.0.0.1", redis_port())
    yield proxy
    proxy.stop()


def test_a_case_created_while_the_broker_is_down_is_routed_when_it_is_back(
    settings, proxy, agent, refunds
):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.HANDOFF_OUTBOX_GRACE_SECONDS = 0
    refunds.routing_rules = [
        {
            "when": {"field": "metadata.tier", "op": "eq", "value": "gold"},
            "then": {"priority": "high"},
        }
    ]
    refunds.save()
    with celery_broker(f"redis://127.0.0.1:{proxy.port}/12") as app:
        # Broker down (proxy not listening): the create commits and its send fails fast.
        started = time.monotonic()
        case = make_case(agent=agent, queue=refunds, metadata={"tier": "gold"})
        assert time.monotonic() - started < 5
        assert Escalation.objects.get(pk=case.pk).routed_at is None
        item = OutboxItem.objects.get(escalation=case, kind="route")
        assert item.done_at is None
        assert sweeps.redrive_outbox() == 0  # still down: nothing sent, nothing lost

        proxy.start()  # broker back
        assert sweeps.redrive_outbox() >= 1
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            assert wait_until(
                lambda: OutboxItem.objects.filter(pk=item.pk, done_at__isnull=False).exists(),
                timeout=15,
            )
    case.refresh_from_db()
    assert case.routed_at is not None and case.priority == "high"
    assert AuditEvent.objects.filter(escalation=case, verb="escalation.routed").count() == 1


def test_healthz_reports_the_broker_down_without_failing(settings, proxy, db):
    with celery_broker(f"redis://127.0.0.1:{proxy.port}/12"):
        down = Client().get("/healthz")
        assert down.status_code == 200
        assert down.json() == {"status": "ok", "database": "ok", "broker": "down"}
        ready = Client().get("/readyz")
        assert ready.status_code == 503 and ready.json()["broker"] == "down"
        proxy.start()
        assert Client().get("/healthz").json()["broker"] == "ok"
        assert Client().get("/readyz").status_code == 200
