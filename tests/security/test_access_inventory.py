"""Who reaches what, for every route the project serves: the inventory below classifies each
one, a route missing from it fails the first test (so a new page cannot skip these checks),
and every class is then tried with the wrong person.

- anonymous: web pages send to sign-in and change nothing; API endpoints answer 401;
- a reviewer (and a person in no team): 403 on every manager page and action;
- a reviewer of another team: 404 on every page and action of an ops case;
- a manager of another team: 404 on every manager page about an ops object;
- another agent: 404 on every endpoint that names an ops case, and none of its cases, labels
  or figures in any collection.
"""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from escalation.models import AuditEvent, Escalation, Status
from tests.api.helpers import API, ESCALATIONS, client_for, resolve_case, row_counts
from tests.factories import make_case
from tests.security.routes import (
    API_CASE,
    API_ROUTES,
    CASE_PAGES,
    MANAGER_OBJECT_PAGES,
    MANAGER_PAGES,
    PUBLIC,
    WEB,
    api_request,
    request,
    unchanged,
    web_path,
)

pytestmark = pytest.mark.django_db


def served_routes() -> set[str]:
    """Every route's name (or, unnamed, its pattern) outside the Django admin."""

    def walk(patterns, prefix: str = ""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if pattern.app_name != "admin":
                    yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield pattern.name or prefix + str(pattern.pattern)

    return set(walk(get_resolver().url_patterns))


def test_every_route_is_in_this_inventory():
    assert served_routes() == PUBLIC | set(WEB) | set(API_ROUTES)


def test_anonymous_people_are_sent_to_sign_in_and_change_nothing(client, ops_objects):
    events = AuditEvent.objects.count()

    for name, method in WEB.items():
        response = request(client, method, web_path(name, ops_objects), ops_objects)

        assert response.status_code == 302, (name, response.status_code)
        # (Signing out without a session just lands on the sign-in page.)
        assert response.url.startswith(
            "/accounts/login/" if name == "logout" else "/accounts/login/?next="
        )
    assert unchanged(ops_objects, events)


@pytest.mark.parametrize("who", ["alice", "outsider", "lena"])
def test_people_who_manage_nothing_get_403_on_every_manager_page(
    client, request_fixture, ops_objects, who
):
    client.force_login(request_fixture(who))
    events = AuditEvent.objects.count()

    for name, method in (MANAGER_PAGES | MANAGER_OBJECT_PAGES).items():
        response = request(client, method, web_path(name, ops_objects), ops_objects)

        assert response.status_code == 403, (name, response.status_code)
    assert unchanged(ops_objects, events)


@pytest.mark.parametrize("who", ["outsider", "lena"])
def test_people_outside_the_cases_team_get_404_on_every_case_page(
    client, request_fixture, ops_objects, who
):
    client.force_login(request_fixture(who))
    events = AuditEvent.objects.count()

    for name, method in CASE_PAGES.items():
        response = request(client, method, web_path(name, ops_objects), ops_objects)

        assert response.status_code == 404, (name, response.status_code)
        assert "Ops-only refund" not in response.content.decode()
    assert unchanged(ops_objects, events)


def test_a_manager_of_another_team_gets_404_on_every_page_about_an_ops_object(
    client, larry, ops_objects
):
    client.force_login(larry)
    events = AuditEvent.objects.count()

    for name, method in MANAGER_OBJECT_PAGES.items():
        response = request(client, method, web_path(name, ops_objects), ops_objects)

        assert response.status_code == 404, (name, response.status_code)
    assert unchanged(ops_objects, events)


def test_a_manager_of_another_team_sees_no_ops_case_on_any_manager_page(client, larry, ops_objects):
    client.force_login(larry)

    for name, method in MANAGER_PAGES.items():
        if method != "GET":
            continue
        response = client.get(web_path(name, ops_objects))
        body = b"".join(response.streaming_content) if response.streaming else response.content

        assert response.status_code == 200, (name, response.status_code)
        assert b"Ops-only refund" not in body and str(ops_objects["case"].pk).encode() not in body


def test_the_managers_own_team_does_reach_every_manager_page(client, mona, ops_objects):
    # The refusals above are about the person, not broken pages.
    client.force_login(mona)
    for name, method in (MANAGER_PAGES | MANAGER_OBJECT_PAGES).items():
        response = request(client, method, web_path(name, ops_objects), ops_objects)
        assert response.status_code in (200, 302), (name, response.status_code)


@pytest.fixture
def request_fixture(request, outsider):
    """People by name: alice (ops reviewer), outsider (no team), lena (legal reviewer)."""
    return lambda who: request.getfixturevalue(who)


# --- API -------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the long-poll hands its connection back to the pool
def test_every_api_endpoint_refuses_a_request_without_a_key(agent, refunds):
    # tests/api/test_auth.py tries eleven kinds of bad key on most of these.
    case = make_case(agent=agent, queue=refunds)
    before = row_counts()

    for name in API_ROUTES:
        response = api_request(Client(), name, case.pk)

        assert response.status_code == 401, (name, response.status_code)
        assert response["WWW-Authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "unauthenticated"
    assert row_counts() == before


@pytest.mark.django_db(transaction=True)
def test_another_agents_case_is_404_on_every_endpoint_that_names_a_case(
    agent, other_agent, refunds, alice
):
    theirs = make_case(agent=agent, queue=refunds, external_id="theirs-1")
    intruder = client_for(other_agent)
    before = row_counts()

    for name in API_CASE:
        response = api_request(intruder, name, theirs.pk)

        assert response.status_code == 404, (name, response.status_code)
        assert response.json()["error"]["code"] == "not_found"
        assert str(theirs.pk) not in response.content.decode()
    assert row_counts() == before
    assert Escalation.objects.get(pk=theirs.pk).status == Status.OPEN


def test_no_collection_shows_another_agents_cases_labels_or_figures(
    agent, other_agent, refunds, alice
):
    theirs = make_case(agent=agent, queue=refunds, external_id="theirs-1", summary="Theirs")
    resolve_case(theirs, alice, decision="reject")
    intruder = client_for(other_agent)

    listed = intruder.get(ESCALATIONS, {"external_id": "theirs-1"}).json()
    labels = intruder.get(f"{API}/labels").json()
    streams = [
        b"".join(intruder.get(f"{API}/labels", {"format": fmt}).streaming_content)
        for fmt in ("jsonl", "csv")
    ]
    figures = intruder.get(f"{API}/calibration", {"queue": "refunds"}).json()
    mine = client_for(agent).get(f"{API}/calibration", {"queue": "refunds"}).json()

    assert listed["results"] == [] and labels["results"] == []
    assert all(str(theirs.pk).encode() not in stream for stream in streams)
    assert figures["total"] == 0 and mine["total"] == 1  # the same query counts for its owner


def test_an_id_that_is_no_uuid_is_a_plain_404(agent, refunds):
    response = client_for(agent).get(f"{ESCALATIONS}/{uuid.uuid4().hex[:8]}' OR 1=1 --")

    assert response.status_code == 404
