"""GET /api/v1/escalations/{id}/resolution?wait=S: 200 with the case once it is terminal, 202
with the case when the wait runs out, woken by a resolution committed elsewhere.

The long-poll gives its database connection back to the pool before it waits, which a test
transaction cannot survive: these tests run against committed data (transaction=True)."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.test import Client

from escalation import transitions
from escalation.audit import Actor
from escalation.models import AgentKey, Queue, Status
from tests.api.helpers import assert_error, bearer, case_path, client_for, resolve_case
from tests.factories import make_case

pytestmark = pytest.mark.django_db(transaction=True)


def resolution(client: Client, case_or_id, wait=None):
    query = {} if wait is None else {"wait": wait}
    return client.get(case_path(case_or_id, "/resolution"), query)


def test_an_open_case_answers_202_with_the_case_when_the_wait_runs_out(api, case):
    started = time.monotonic()

    response = resolution(api, case, wait=1)

    elapsed = time.monotonic() - started
    assert response.status_code == 202
    body = response.json()
    assert body["id"] == str(case.pk)
    assert body["status"] == "open"
    assert body["resolution"] is None
    assert 0.9 <= elapsed < 5


def test_without_wait_an_open_case_answers_202_at_once(api, case):
    started = time.monotonic()

    response = resolution(api, case)

    assert response.status_code == 202
    assert response.json()["status"] == "open"
    assert time.monotonic() - started < 2


def test_a_claimed_case_is_still_not_terminal(api, case, as_alice):
    transitions.claim(actor=as_alice, case_id=case.pk)

    response = resolution(api, case, wait=0)

    assert response.status_code == 202
    assert response.json()["status"] == "claimed"


def test_a_resolved_case_answers_200_at_once_whatever_the_wait(api, case, alice):
    resolve_case(case, alice, decision="reject", note="not eligible")
    started = time.monotonic()

    response = resolution(api, case, wait=30)

    assert time.monotonic() - started < 2
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "resolved"
    assert body["resolution"]["decision"] == "reject"
    assert body["resolution"]["resolved_by"] == "alice"
    assert body["resolution"]["note"] == "not eligible"


def test_a_cancelled_case_answers_200_at_once(api, case, as_agent):
    transitions.cancel(actor=as_agent, case_id=case.pk, reason="withdrawn")
    started = time.monotonic()

    response = resolution(api, case, wait=30)

    assert time.monotonic() - started < 2
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


def wait_while_resolved_elsewhere(api, case, alice, after: float):
    """Long-poll `case` (wait=10) while another thread resolves it `after` seconds in;
    returns the answer and the seconds it took."""
    errors: list[BaseException] = []

    def resolve_soon() -> None:
        try:
            time.sleep(after)
            resolve_case(case, alice, decision="approve", note="fine")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    resolver = threading.Thread(target=resolve_soon)
    started = time.monotonic()
    resolver.start()
    response = resolution(api, case, wait=10)
    elapsed = time.monotonic() - started
    resolver.join(timeout=10)
    assert not errors, errors
    return response, elapsed


def test_the_long_poll_wakes_within_a_second_of_a_resolution_made_elsewhere(api, case, alice):
    response, elapsed = wait_while_resolved_elsewhere(api, case, alice, after=0.5)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "resolved"
    assert response.json()["resolution"]["resolved_by"] == "alice"
    assert elapsed < 3, f"woke after {elapsed:.1f}s of a 10 s wait"


def test_a_lost_wake_up_is_caught_by_the_status_re_check(api, case, alice, monkeypatch):
    from escalation import wakeups
    from escalation.api import longpoll

    monkeypatch.setattr(wakeups, "publish", lambda case_id: None)  # the wake-up never comes
    monkeypatch.setattr(longpoll, "RECHECK_SECONDS", 0.5)
    response, elapsed = wait_while_resolved_elsewhere(api, case, alice, after=0.3)
    assert response.status_code == 200, response.content
    assert response.json()["resolution"]["resolved_by"] == "alice"  # rendered after the wait
    assert elapsed < 3, f"answered after {elapsed:.1f}s of a 10 s wait"


# "²" passes str.isdigit() but int() cannot read it.
@pytest.mark.parametrize(
    "wait", ["31", "-1", "abc", "1.5", "+5", " 5", "100000000000000000000", "²"]
)
def test_a_bad_wait_is_a_400(api, case, wait):
    response = resolution(api, case, wait=wait)

    error = assert_error(response, 400, "invalid")
    assert "wait" in error["fields"]


def test_wait_30_is_the_longest_allowed(api, case, as_agent):
    transitions.cancel(actor=as_agent, case_id=case.pk)

    response = resolution(api, case, wait="30")

    assert response.status_code == 200


def test_another_agents_case_is_a_404(other_api, case):
    response = resolution(other_api, case, wait=0)

    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("case_id", ["not-a-uuid", "0f6c1b6e-1d2a-4f3b-9c8d-7e6f5a4b3c2d"])
def test_no_such_case_is_a_404(api, case_id):
    response = resolution(api, case_id, wait=0)

    assert_error(response, 404, "not_found")


def test_without_a_key_it_is_a_401_with_www_authenticate(case):
    response = resolution(Client(), case, wait=0)

    assert_error(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"] == "Bearer"


def test_a_revoked_key_is_a_401(agent, case):
    key, raw = AgentKey.generate(agent)
    key.revoke()

    response = resolution(Client(headers=bearer(raw)), case, wait=0)

    assert_error(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_other_methods_are_a_json_405(api, case, method):
    response = getattr(api, method)(case_path(case, "/resolution"))

    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]
    assert type(case).objects.get(pk=case.pk).status == Status.OPEN


def test_a_post_without_a_csrf_token_is_still_a_json_405(agent, case):
    # Agents are programs with no CSRF cookie: the API must never answer with Django's HTML
    # CSRF failure page.
    client = client_for(agent, enforce_csrf_checks=True)

    response = client.post(case_path(case, "/resolution"))

    assert_error(response, 405, "method_not_allowed")


def test_the_long_poll_is_rate_limited_like_the_rest(slow_agent):
    case = make_case(agent=slow_agent, queue=Queue.objects.get(slug="refunds"))
    client = client_for(slow_agent)
    assert resolution(client, case).status_code == 202
    assert resolution(client, case).status_code == 202

    response = resolution(client, case)

    assert_error(response, 429, "rate_limited")
    assert int(response["Retry-After"]) >= 1


def test_one_agent_cannot_wait_on_the_other_agents_case(api, other_agent, refunds):
    theirs = make_case(agent=other_agent, queue=refunds)
    transitions.cancel(actor=Actor.for_agent(other_agent), case_id=theirs.pk)

    response = resolution(api, theirs, wait=0)

    assert_error(response, 404, "not_found")
