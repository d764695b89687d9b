"""API keys: stored only as a SHA-256 digest, compared in constant time, accepted only from the
Authorization header, and never written to a log — not on success, not on refusal, not in a
server error's traceback."""

from __future__ import annotations

import hashlib
import logging

import pytest
from django.db import connection
from django.test import Client

from escalation import keys
from escalation.api import views
from escalation.audit import Actor
from escalation.models import AgentKey, AuditEvent
from escalation.models import agents as agent_models
from tests.api.helpers import API, ESCALATIONS, bearer, case_path, create_body, post_json
from tests.factories import make_case

pytestmark = pytest.mark.django_db


def test_the_database_holds_a_digest_of_the_key_and_never_the_key(agent):
    key, raw = keys.issue_key(agent=agent, actor=Actor.system())
    secret = raw[len(key.prefix) + 1 :]

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM escalation_agentkey WHERE id = %s", [key.pk])
        row = " ".join(str(value) for value in cursor.fetchone())
    audited = " ".join(str(e.data) for e in AuditEvent.objects.all())

    assert key.digest == hashlib.sha256(raw.encode()).hexdigest()
    assert secret not in row and raw not in row
    assert key.prefix in audited and secret not in audited


def test_keys_are_compared_in_constant_time(agent, monkeypatch):
    _, raw = AgentKey.generate(agent)
    calls = []
    real = agent_models.hmac.compare_digest
    monkeypatch.setattr(
        agent_models.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b)
    )

    assert AgentKey.authenticate(raw) is not None
    assert AgentKey.authenticate(raw[:-1] + ("A" if raw[-1] != "A" else "B")) is None
    assert len(calls) == 2 and all(len(a) == len(b) == 64 for a, b in calls)


@pytest.mark.parametrize("name", ["api_key", "key", "access_token", "token", "authorization"])
def test_a_key_in_the_url_is_not_accepted(agent, refunds, name):
    _, raw = AgentKey.generate(agent)

    response = Client().get(ESCALATIONS, {name: raw})

    assert response.status_code == 401


def test_a_key_in_a_cookie_or_another_header_is_not_accepted(agent, refunds):
    _, raw = AgentKey.generate(agent)
    client = Client(headers={"X-Api-Key": raw})
    client.cookies["api_key"] = raw

    assert client.get(ESCALATIONS).status_code == 401


def test_no_link_the_api_answers_with_carries_a_key(agent, refunds):
    _, raw = AgentKey.generate(agent)
    for _ in range(3):
        make_case(agent=agent, queue=refunds)

    page = Client(headers=bearer(raw)).get(ESCALATIONS, {"limit": 1}).json()

    assert page["next"] and raw not in page["next"] and "key" not in page["next"].lower()


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)  # fills exc_text from the traceback
        self.records.append(record)


@pytest.fixture
def every_log_record():
    """Every record at any level, including loggers that do not propagate (handoff,
    django.request)."""
    keep = _Keep()
    keep.setFormatter(logging.Formatter("%(message)s"))
    loggers = [logging.getLogger(name) for name in ("", "handoff", "django.request", "axes")]
    saved = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.addHandler(keep)
        logger.setLevel(logging.DEBUG)
    yield keep
    for logger, level in saved:
        logger.removeHandler(keep)
        logger.setLevel(level)


def test_keys_never_reach_the_logs(agent, refunds, every_log_record, monkeypatch):
    _, raw = AgentKey.generate(agent)
    revoked, revoked_raw = AgentKey.generate(agent)
    revoked.revoke()
    forged = raw[:-4] + "AAAA"
    case = make_case(agent=agent, queue=refunds)

    post_json(Client(headers=bearer(raw)), ESCALATIONS, create_body())
    Client(headers=bearer(forged)).get(ESCALATIONS)
    Client(headers=bearer(revoked_raw)).get(ESCALATIONS)
    Client(headers=bearer(raw)).get(f"{API}/nowhere")
    monkeypatch.setattr(views.EscalationDetail, "get", lambda *a, **k: 1 / 0)
    failed = Client(headers=bearer(raw)).get(case_path(case))

    assert failed.status_code == 500  # the server error was logged, with its traceback
    logged = "\n".join(
        f"{record.getMessage()} {record.exc_text or ''} {record.__dict__}"
        for record in every_log_record.records
    )
    assert "ZeroDivisionError" in logged
    for secret in (raw, forged, revoked_raw):
        assert secret[12:] not in logged
