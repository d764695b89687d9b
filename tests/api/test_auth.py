"""Every endpoint refuses a request without a working API key: 401, `WWW-Authenticate: Bearer`,
the JSON error envelope, and nothing written."""

from __future__ import annotations

import base64

import pytest
from django.test import Client

from escalation.models import AgentKey, Escalation, Status
from tests.api.helpers import (
    API,
    ESCALATIONS,
    assert_error,
    bearer,
    create_body,
    post_json,
    row_counts,
)
from tests.factories import make_case

pytestmark = pytest.mark.django_db

# (method, path with {id} for the case, body for POSTs)
ENDPOINTS = [
    pytest.param("get", ESCALATIONS, None, id="list"),
    pytest.param("post", ESCALATIONS, create_body(), id="create"),
    pytest.param("post", f"{ESCALATIONS}/batch", {"items": [create_body()]}, id="batch"),
    pytest.param("get", f"{ESCALATIONS}/{{id}}", None, id="get"),
    pytest.param("post", f"{ESCALATIONS}/{{id}}/context", {"note": "more"}, id="context"),
    pytest.param("post", f"{ESCALATIONS}/{{id}}/cancel", {"reason": "x"}, id="cancel"),
    # The long-poll hands its connection back to the pool before waiting, which a test
    # transaction cannot survive: it runs against committed data.
    pytest.param(
        "get",
        f"{ESCALATIONS}/{{id}}/resolution",
        None,
        id="resolution",
        marks=pytest.mark.django_db(transaction=True),
    ),
    pytest.param("get", f"{API}/queues", None, id="queues"),
    pytest.param("get", f"{API}/labels", None, id="labels"),
]


def _well_formed_unknown_key() -> str:
    return "hnd_ABCDEFGH_" + "x" * 43


def _revoked_key(agent) -> str:
    key, raw = AgentKey.generate(agent)
    assert key.revoke()
    return raw


def _inactive_agents_key(agent) -> str:
    _, raw = AgentKey.generate(agent)
    agent.is_active = False
    agent.save(update_fields=["is_active"])
    return raw


# Each maker returns the Authorization header to send (None: send none).
CREDENTIALS = [
    pytest.param(lambda agent: None, id="missing-header"),
    pytest.param(lambda agent: "", id="empty-header"),
    pytest.param(
        lambda agent: "Basic " + base64.b64encode(b"refund-bot:secret").decode(),
        id="basic-scheme",
    ),
    pytest.param(
        lambda agent: "Token " + AgentKey.generate(agent)[1], id="valid-key-under-wrong-scheme"
    ),
    pytest.param(lambda agent: "Bearer", id="bearer-without-key"),
    pytest.param(lambda agent: "Bearer " + _well_formed_unknown_key(), id="unknown-key"),
    pytest.param(lambda agent: "Bearer not-a-key", id="malformed-key"),
    pytest.param(lambda agent: "Bearer hnd_ABCDEFGH_short", id="truncated-key"),
    pytest.param(
        lambda agent: "Bearer " + AgentKey.generate(agent)[1][:-1] + "!", id="wrong-secret"
    ),
    pytest.param(lambda agent: "Bearer " + _revoked_key(agent), id="revoked-key"),
    pytest.param(lambda agent: "Bearer " + _inactive_agents_key(agent), id="inactive-agent"),
]


@pytest.mark.parametrize("method, path, body", ENDPOINTS)
@pytest.mark.parametrize("credentials", CREDENTIALS)
def test_every_endpoint_refuses_a_request_without_a_working_key(
    credentials, method, path, body, agent, refunds
):
    case = make_case(agent=agent, queue=refunds)
    header = credentials(agent)
    client = Client(headers={"Authorization": header} if header is not None else {})
    before = row_counts()

    url = path.format(id=case.pk)
    response = post_json(client, url, body) if method == "post" else client.get(url)

    assert_error(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"] == "Bearer"
    assert row_counts() == before
    assert Escalation.objects.get(pk=case.pk).status == Status.OPEN


def test_a_valid_key_is_accepted_and_its_last_use_recorded(agent, refunds):
    key, raw = AgentKey.generate(agent)
    assert key.last_used_at is None

    response = Client(headers=bearer(raw)).get(ESCALATIONS)

    assert response.status_code == 200
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_the_bearer_scheme_is_case_insensitive(agent, refunds):
    _, raw = AgentKey.generate(agent)

    response = Client(headers={"Authorization": f"bearer {raw}"}).get(ESCALATIONS)

    assert response.status_code == 200


def test_a_revoked_key_stops_working_while_the_agents_other_keys_still_work(agent, refunds):
    old, old_raw = AgentKey.generate(agent)
    _, new_raw = AgentKey.generate(agent)
    old.revoke()

    refused = Client(headers=bearer(old_raw)).get(ESCALATIONS)
    accepted = Client(headers=bearer(new_raw)).get(ESCALATIONS)

    assert_error(refused, 401, "unauthenticated")
    assert accepted.status_code == 200


def test_a_key_does_not_work_under_another_keys_prefix(agent, other_agent, refunds):
    _, mine = AgentKey.generate(agent)
    _, theirs = AgentKey.generate(other_agent)
    # Their prefix with my secret: found by prefix, refused by the digest.
    forged = theirs[:12] + mine[12:]

    response = post_json(Client(headers=bearer(forged)), ESCALATIONS, create_body())

    assert_error(response, 401, "unauthenticated")
    assert not Escalation.objects.exists()
