"""PostgreSQL terminates the web server's connections (a failover, an admin's
pg_terminate_backend, a pooler restart) in the middle of a burst of creates."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from escalation import audit
from escalation.models import AuditEvent, Escalation
from tests.support import http_json

pytestmark = pytest.mark.django_db(transaction=True)

AGENTS, POSTS_EACH = 6, 15


def terminate_web_connections() -> int:
    """Terminate the web server's established connections. One still being opened is left
    alone: a failed connect puts the pool into its reconnect backoff (1 s, 2 s, 4 s, ...),
    which under a kill every 200 ms outgrows the test's clock; a real failover cuts the
    connections once and then lets new ones in."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'handoff-fault-web' AND datname = current_database()"
            " AND backend_start < clock_timestamp() - interval '300 milliseconds'"
        )
        return cursor.fetchone()[0]


def create(port: int, key: str, idempotency_key: str) -> tuple[int, dict] | Exception:
    try:
        status, body, _ = http_json(
            port,
            "POST",
            "/api/v1/escalations",
            key=key,
            body={"queue": "refunds", "summary": idempotency_key, "confidence": 0.5, "context": {}},
            headers={"Idempotency-Key": idempotency_key},
            timeout=30,
        )
    except OSError as exc:
        return exc
    return status, body


def test_connections_terminated_during_a_burst_of_creates_lose_no_acknowledged_case(
    stack, agent, refunds, api_key
):
    """Fault: pg_terminate_backend on every connection of the web server, every 200 ms,
    while 6 agents post 90 creates.
    Invariant: every answer is a success whose case is in the database (with its
    escalation.created event) or a JSON error — never a success that is lost, never an HTML
    page; retried with the same Idempotency-Key once the database is left alone, every create
    ends with exactly one case per key; the chain verifies."""
    web = stack.web(DATABASE_POOL_MAX_SIZE="4")
    answers: dict[str, tuple[int, dict] | Exception] = {}
    lock = threading.Lock()
    stop = threading.Event()
    terminated: list[int] = []

    def killer() -> None:
        try:
            while not stop.wait(0.2):
                terminated.append(terminate_web_connections())
        finally:
            connection.close()

    def agent_posts(number: int) -> None:
        for n in range(POSTS_EACH):
            key = f"agent-{number}-{n}"
            answer = create(web.port, api_key, key)
            with lock:
                answers[key] = answer

    killing = threading.Thread(target=killer)
    killing.start()
    posting = [threading.Thread(target=agent_posts, args=(n,)) for n in range(AGENTS)]
    for thread in posting:
        thread.start()
    for thread in posting:
        thread.join(timeout=120)
    stop.set()
    killing.join(timeout=10)

    assert len(answers) == AGENTS * POSTS_EACH
    assert sum(terminated) > 0, "no connection was terminated: the fault never happened"
    acknowledged = {}
    failed = []
    for key, answer in answers.items():
        assert not isinstance(answer, Exception), (key, answer)  # an answer, never a hang
        status, body = answer
        if status in (200, 201):
            acknowledged[key] = body["id"]
        else:
            assert status >= 500 or status == 409, (key, status, body)
            assert body.get("error", {}).get("code"), (key, status, body)  # JSON envelope
            failed.append(key)
    # Nothing acknowledged is lost.
    durable = set(
        Escalation.objects.filter(pk__in=acknowledged.values()).values_list("pk", flat=True)
    )
    assert {str(pk) for pk in durable} == set(acknowledged.values())
    for case_id in acknowledged.values():
        assert AuditEvent.objects.filter(escalation_id=case_id, verb="escalation.created").exists()

    # The agents retry what failed; a case whose commit went through before its connection
    # was cut is replayed, not created again.
    time.sleep(0.5)
    for key in failed:
        for _ in range(5):
            answer = create(web.port, api_key, key)
            if not isinstance(answer, Exception) and answer[0] in (200, 201):
                acknowledged[key] = answer[1]["id"]
                break
            time.sleep(0.2)
    assert set(acknowledged) == set(answers), set(answers) - set(acknowledged)
    assert Escalation.objects.count() == len(answers)
    assert len(set(acknowledged.values())) == len(answers)
    summaries = sorted(Escalation.objects.values_list("summary", flat=True))
    assert summaries == sorted(answers)
    assert audit.verify_chain().ok
    print(f"{len(failed)} of {len(answers)} creates failed while {sum(terminated)} connections")
