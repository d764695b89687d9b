"""A runaway agent cannot flood the inbox or the service: every endpoint is rate limited per
agent (429 with Retry-After), the open-case cap holds for batches too, every POST refuses a
body over 1 MiB, and page sizes are capped.

Elsewhere: the cap on single creates and under concurrency (tests/api/test_create.py), the
long-poll's rate limit and `wait` bound (tests/api/test_long_poll.py), field lengths
(tests/api/test_create.py), nesting depth (tests/api/test_bad_json.py).
"""

from __future__ import annotations

import json
import uuid

import pytest

from escalation.api import views
from escalation.models import Escalation, Status
from tests.api.helpers import API, ESCALATIONS, client_for, create_body, post_json
from tests.factories import AgentFactory, make_case
from tests.security.routes import API_ROUTES, api_path, api_request

pytestmark = pytest.mark.django_db

MIB = 1024 * 1024
# The long-poll hands its connection back to the pool, which this test's transaction cannot
# survive; its limit is tested in tests/api/test_long_poll.py.
RATE_LIMITED = sorted(name for name in API_ROUTES if name != "api-escalation-resolution")


def test_every_endpoint_is_rate_limited_per_agent_with_retry_after(redis_prefix, refunds):
    for name in RATE_LIMITED:
        # One request, then one every 100 s: the second is refused.
        agent = AgentFactory(
            name=f"burst-{uuid.uuid4().hex[:8]}", rate_per_second=0.01, rate_burst=1
        )
        case = make_case(agent=agent, queue=refunds)
        api = client_for(agent)

        first = api_request(api, name, case.pk)
        second = api_request(api, name, case.pk)

        assert first.status_code < 400, (name, first.status_code, first.content[:200])
        assert second.status_code == 429, (name, second.status_code)
        assert second.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(second["Retry-After"]) <= 100, (name, second["Retry-After"])


def test_one_agents_flood_does_not_limit_another(redis_prefix, refunds, other_agent):
    flooder = AgentFactory(name="flooder", rate_per_second=0.01, rate_burst=1)
    api = client_for(flooder)
    api.get(ESCALATIONS)
    assert api.get(ESCALATIONS).status_code == 429

    assert client_for(other_agent).get(ESCALATIONS).status_code == 200


def test_a_batch_cannot_take_an_agent_past_its_open_case_cap(refunds):
    agent = AgentFactory(name="capped", max_open_cases=2)
    make_case(agent=agent, queue=refunds)
    items = [{"idempotency_key": f"k{i}", **create_body()} for i in range(3)]

    response = post_json(client_for(agent), f"{ESCALATIONS}/batch", {"items": items})

    assert response.status_code == 200
    statuses = [item["status"] for item in response.json()["results"]]
    assert statuses.count(201) == 1 and statuses.count(429) == 2, statuses
    assert Escalation.objects.filter(agent=agent, status=Status.OPEN).count() == 2


@pytest.mark.parametrize(
    "name", sorted(name for name, method in API_ROUTES.items() if method == "POST")
)
def test_every_post_refuses_a_body_over_1_mib(agent, refunds, name):
    case = make_case(agent=agent, queue=refunds)
    body = json.dumps({"note": "x" * MIB})

    response = post_json(client_for(agent), api_path(name, case.pk), body)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_a_batch_of_more_than_100_items_is_refused(agent, refunds):
    items = [{"idempotency_key": f"k{i}", **create_body()} for i in range(101)]

    response = post_json(client_for(agent), f"{ESCALATIONS}/batch", {"items": items})

    assert response.status_code == 400
    assert not Escalation.objects.exists()


def test_a_page_of_cases_is_capped_whatever_limit_asks_for(agent, refunds, monkeypatch):
    monkeypatch.setattr(views.CasePagination, "max_page_size", 2)  # 200 in production
    for _ in range(3):
        make_case(agent=agent, queue=refunds)

    response = client_for(agent).get(ESCALATIONS, {"limit": 10**9})

    assert response.status_code == 200
    assert len(response.json()["results"]) == 2 and response.json()["next"]


def test_the_production_caps_are_what_the_docs_say():
    assert views.CasePagination.max_page_size == 200
    assert views.LABEL_PAGE_MAX == 1000


@pytest.mark.parametrize("limit", ["1001", "0", "-1", "1e3", "99999999999999999999"])
def test_a_labels_page_larger_than_1000_or_not_a_count_is_refused(agent, refunds, limit):
    response = client_for(agent).get(f"{API}/labels", {"limit": limit})

    assert response.status_code == 400
    assert response.json()["error"]["fields"]["limit"]
