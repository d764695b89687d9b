"""/healthz, /readyz and /metrics."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from escalation import transitions
from tests.factories import make_case

pytestmark = pytest.mark.django_db


def test_healthz_answers_with_the_database_and_broker_state(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_readyz_checks_migrations_database_and_broker(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["migrations"] == "ok"


def test_health_endpoints_refuse_other_methods(client):
    assert client.post("/healthz").status_code == 405
    assert client.post("/metrics").status_code == 405


def test_metrics_report_depth_and_oldest_open_age_per_queue(
    client, agent, refunds, support, as_alice
):
    old = make_case(agent=agent, queue=refunds, now=timezone.now() - timedelta(minutes=10))
    make_case(agent=agent, queue=refunds)
    transitions.claim(actor=as_alice, case_id=make_case(agent=agent, queue=refunds).pk)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert 'handoff_queue_depth{queue="refunds",status="open"} 2.0' in text
    assert 'handoff_queue_depth{queue="refunds",status="claimed"} 1.0' in text
    assert 'handoff_queue_depth{queue="support",status="open"} 0.0' in text
    age_line = next(
        line
        for line in text.splitlines()
        if line.startswith('handoff_queue_oldest_open_age_seconds{queue="refunds"}')
    )
    age = float(age_line.split()[-1])
    assert 600 <= age < 700, old


def test_metrics_need_the_token_when_one_is_set(client, settings):
    settings.HANDOFF_METRICS_TOKEN = "s3cret-token"
    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing["WWW-Authenticate"] == "Bearer"
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert right.status_code == 200
