"""Query strings are input too: every GET page and endpoint, given hostile values for every
parameter it reads (NUL, offsets PostgreSQL refuses, the last representable day, huge and
non-numbers), answers without a server error. Found by fuzzing: a NUL in an API filter and
`to=9999-12-31` on the audit log were 500s, and so was `updated_after=...+23:59`."""

from __future__ import annotations

import pytest

from tests.api.helpers import API, ESCALATIONS, client_for
from tests.factories import make_case
from tests.security.routes import WEB, web_path

pytestmark = pytest.mark.django_db

HOSTILE_VALUES = [
    "\x00",
    "a\x00b",
    "2026-01-01T00:00:00+23:59",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31",
    "0001-01-01",
    "-1",
    "99999999999999999999999",
    "1e308",
    "nan",
    "'; --",
]
# Every parameter any page or endpoint reads.
PARAMETERS = [
    "queue", "priority", "status", "agent", "sla", "mine", "q", "after", "since", "until",
    "updated_after", "external_id", "verb", "decision", "reviewer", "from", "to", "days",
    "alpha", "delta", "agent_version", "cursor", "before", "limit", "wait",
]  # fmt: skip

API_ENDPOINTS = [
    ESCALATIONS,
    f"{ESCALATIONS}/{{id}}",
    f"{API}/queues",
    f"{API}/labels",
    f"{API}/labels?format=jsonl",
    f"{API}/labels?format=csv",
    f"{API}/calibration",
]


def _read(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.mark.parametrize("page", sorted(n for n, method in WEB.items() if method == "GET"))
def test_no_page_fails_on_a_hostile_query_value(client, mona, ops_objects, page):
    page = web_path(page, ops_objects)
    client.force_login(mona)

    for value in HOSTILE_VALUES:
        response = client.get(page, {name: value for name in PARAMETERS})

        body = _read(response)[:300]
        assert response.status_code in (200, 302, 400), (value, response.status_code, body)


@pytest.mark.parametrize("endpoint", API_ENDPOINTS)
def test_no_endpoint_fails_on_a_hostile_query_value(agent, refunds, endpoint):
    case = make_case(agent=agent, queue=refunds)
    path, _, fmt = endpoint.format(id=case.pk).partition("?format=")
    api = client_for(agent)

    for value in HOSTILE_VALUES:
        params = {name: value for name in PARAMETERS} | ({"format": fmt} if fmt else {})
        response = api.get(path, params)

        body = _read(response)[:300]
        assert response.status_code in (200, 400), (value, response.status_code, body)
        if response.status_code == 400:
            assert response.json()["error"]["code"] == "invalid"


def test_a_nul_in_an_api_filter_is_refused_before_the_database(agent, refunds):
    response = client_for(agent).get(ESCALATIONS, {"external_id": "ticket\x00"})

    assert response.status_code == 400
    assert "NUL" in response.json()["error"]["message"]


def test_an_offset_postgresql_refuses_is_just_another_instant(agent, refunds):
    make_case(agent=agent, queue=refunds)

    # 00:00 at +23:59 is 00:01 the day before in UTC: the case (created now) is after it.
    response = client_for(agent).get(ESCALATIONS, {"updated_after": "2026-01-01T00:00:00+23:59"})

    assert response.status_code == 200
    assert len(response.json()["results"]) == 1


def test_the_audit_log_refuses_the_last_day_as_a_bound_instead_of_failing(client, mona):
    client.force_login(mona)

    response = client.get("/manage/audit/", {"to": "9999-12-31"})

    assert response.status_code == 200
    assert "use a date like" in response.content.decode()
