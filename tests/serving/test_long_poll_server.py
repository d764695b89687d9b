"""The long-poll under the real server (gunicorn + uvicorn worker): waiting agents hold no
database connection, and a decision wakes them at once.

The server runs with a pool of two connections; twenty long-polls wait at the same time, and a
create must still go through while they do.
"""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest
from django.db import connection

from escalation import transitions
from escalation.models import AgentKey
from tests.factories import make_case
from tests.support import served_tests_database

pytestmark = pytest.mark.django_db(transaction=True)

WAITERS = 20


@pytest.fixture
def server(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    with served_tests_database(tmp_path, "handoff-longpoll-test") as port:
        yield port


def server_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'handoff-longpoll-test'"
        )
        return cursor.fetchone()[0]


def request(
    port: int, method: str, path: str, key: str, body: dict | None = None, timeout: float = 20
) -> tuple[int, dict, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    started = time.monotonic()
    conn.request(method, path, body=json.dumps(body) if body else None, headers=headers)
    response = conn.getresponse()
    data = json.loads(response.read() or b"{}")
    conn.close()
    return response.status, data, time.monotonic() - started


def test_waiting_long_polls_hold_no_connection_and_all_wake_on_the_decision(
    server, agent, refunds, as_alice
):
    _, key = AgentKey.generate(agent)
    case = make_case(agent=agent, queue=refunds)
    results: list[tuple[int, dict, float]] = []

    def wait_for_it() -> None:
        results.append(
            request(server, "GET", f"/api/v1/escalations/{case.pk}/resolution?wait=25", key)
        )

    waiters = [threading.Thread(target=wait_for_it) for _ in range(WAITERS)]
    for thread in waiters:
        thread.start()
    # Let every long-poll reach its wait: the server's pool has opened its connection for
    # the first of them, then a second more (on a loaded machine the first takes a while).
    deadline = time.monotonic() + 15
    while server_connections() == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)

    # The pool keeps at least one connection open, and never more than its two, however
    # many agents wait (>= 1 also proves the count really sees the server's connections).
    assert 1 <= server_connections() <= 2
    status, created, elapsed = request(
        server,
        "POST",
        "/api/v1/escalations",
        key,
        {
            "queue": "refunds",
            "summary": "Still accepting while agents wait",
            "confidence": 0.9,
            "context": {},
        },
    )
    assert status == 201, created

    claimed = transitions.claim(actor=as_alice, case_id=case.pk)
    decided_at = time.monotonic()
    transitions.resolve(
        actor=as_alice, case_id=case.pk, claim_token=claimed.claim_token, decision="approve"
    )
    for thread in waiters:
        thread.join(timeout=30)

    assert len(results) == WAITERS
    assert all(status == 200 and body["status"] == "resolved" for status, body, _ in results)
    # Every waiter answered well before its 25 s wait: woken by the decision, not the clock.
    assert time.monotonic() - decided_at < 6
