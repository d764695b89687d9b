"""Sync views under the real server (gunicorn + uvicorn worker, handoff.asgi): each runs on one
of the process's HANDOFF_WEB_THREADS threads, with the whole middleware chain, and gives its
database connection back before its answer is sent.

The server runs two threads and a pool of two connections.
"""

from __future__ import annotations

import asyncio
import csv
import http.client
import io
import json
import threading
import uuid

import pytest
from django.core import signals
from django.db import connection

from escalation.models import AgentKey
from tests.api.helpers import resolve_case
from tests.factories import make_case
from tests.support import at_once, served_tests_database

pytestmark = pytest.mark.django_db(transaction=True)

APPLICATION_NAME = "handoff-sync-views-test"


@pytest.fixture
def server(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    with served_tests_database(tmp_path, APPLICATION_NAME, HANDOFF_WEB_THREADS="2") as port:
        yield port


def request(port: int, method: str, path: str, key: str, body: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    conn.request(method, path, body=json.dumps(body) if body else None, headers=headers)
    response = conn.getresponse()
    answer = (response.status, dict(response.getheaders()), response.read())
    conn.close()
    return answer


def server_connections_in_use() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state <> 'idle'",
            [APPLICATION_NAME],
        )
        return cursor.fetchone()[0]


def create_body(n: int) -> dict:
    return {"queue": "refunds", "summary": f"case {n}", "confidence": 0.5, "context": {"n": n}}


def test_more_requests_than_threads_all_answered_with_the_middleware_headers(
    server, agent, refunds
):
    _, key = AgentKey.generate(agent)

    answers = at_once(
        [
            lambda n=n: request(server, "POST", "/api/v1/escalations", key, create_body(n))
            for n in range(12)
        ]
    )

    assert [status for status, _, _ in answers] == [201] * 12, answers[0]
    assert len({json.loads(content)["id"] for _, _, content in answers}) == 12
    for _, headers, _ in answers:
        # The middleware ran around the view: security headers on every API answer.
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    # Each request gave its connection back: none is left busy (inside a transaction).
    assert server_connections_in_use() == 0


def test_errors_and_unknown_paths_answer_through_the_same_chain(server, agent):
    _, key = AgentKey.generate(agent)

    status, headers, content = request(server, "POST", "/api/v1/escalations", "not-a-key", {})
    assert status == 401 and json.loads(content)["error"]["code"] == "unauthenticated"
    status, headers, content = request(server, "GET", "/api/v1/no-such-thing", key)
    assert status == 404 and json.loads(content)["error"]["code"] == "not_found"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_a_streamed_export_is_sent_whole(server, agent, refunds, alice):
    _, key = AgentKey.generate(agent)
    cases = [make_case(agent=agent, queue=refunds, external_id=f"x-{n}") for n in range(3)]
    for case in cases:
        resolve_case(case, alice)

    status, headers, content = request(server, "GET", "/api/v1/labels?format=csv", key)

    assert status == 200, content[:300]
    assert headers["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(content.decode(), newline="")))
    assert sorted(row["external_id"] for row in rows) == ["x-0", "x-1", "x-2"]
    assert server_connections_in_use() == 0


def test_only_async_views_go_to_djangos_handler_and_the_rest_run_on_the_web_threads():
    from handoff import asgi

    def scope(path: str) -> dict:
        return {"type": "http", "path": path, "root_path": ""}

    assert asgi._is_async_view(scope(f"/api/v1/escalations/{uuid.uuid4()}/resolution"))
    assert not asgi._is_async_view(scope("/api/v1/escalations"))
    assert not asgi._is_async_view(scope("/no-such-page"))

    threads: list[str] = []

    def started(**kwargs) -> None:
        threads.append(threading.current_thread().name)

    async def get(path: str) -> int:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        headers = [(b"host", b"testserver")]
        request = {**scope(path), "method": "GET", "query_string": b"", "headers": headers}
        await asgi.application(request, receive, send)
        return sent[0]["status"]

    signals.request_started.connect(started)
    try:
        assert asyncio.run(get("/no-such-page")) == 404
    finally:
        signals.request_started.disconnect(started)
    assert len(threads) == 1 and threads[0].startswith("handoff-web"), threads
