"""Who reaches which URL: login required, the right method only, and nobody reaches a case
outside their queues by guessing its id (404, never 403, so an id leaks nothing)."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from escalation.models import AuditEvent, Escalation, Status
from tests.factories import PASSWORD
from tests.web.helpers import case_url, flashed, text

pytestmark = pytest.mark.django_db

CASE_GET_ACTIONS = ["", "updates/"]
CASE_POST_ACTIONS = ["claim/", "release/", "heartbeat/", "decide/", "transfer/"]


def test_root_redirects_to_the_inbox(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.url == "/inbox/"


def test_the_inbox_without_login_redirects_to_login(client):
    response = client.get("/inbox/?queue=refunds")
    assert response.status_code == 302
    assert response.url == "/accounts/login/?next=/inbox/%3Fqueue%3Drefunds"


def test_next_case_without_login_redirects_to_login(client, case):
    response = client.post("/inbox/next/")
    assert response.status_code == 302
    assert response.url == "/accounts/login/?next=/inbox/next/"
    case.refresh_from_db()
    assert case.status == Status.OPEN


@pytest.mark.parametrize("action", CASE_GET_ACTIONS)
def test_case_pages_without_login_redirect_to_login(client, case, action):
    path = case_url(case, action)
    response = client.get(path)
    assert response.status_code == 302
    assert response.url == f"/accounts/login/?next={path}"


@pytest.mark.parametrize("action", CASE_POST_ACTIONS)
def test_case_actions_without_login_redirect_to_login_and_change_nothing(client, case, action):
    path = case_url(case, action)
    response = client.post(path, {"decision": "approve", "queue": "support"})
    assert response.status_code == 302
    assert response.url == f"/accounts/login/?next={path}"
    case.refresh_from_db()
    assert case.status == Status.OPEN and case.claimed_by is None


def test_the_inbox_refuses_post(client, alice):
    client.force_login(alice)
    assert client.post("/inbox/").status_code == 405


def test_next_case_refuses_get(client, alice, case):
    client.force_login(alice)
    assert client.get("/inbox/next/").status_code == 405
    case.refresh_from_db()
    assert case.status == Status.OPEN


@pytest.mark.parametrize("action", CASE_GET_ACTIONS)
def test_case_pages_refuse_post(client, alice, case, action):
    client.force_login(alice)
    assert client.post(case_url(case, action)).status_code == 405


@pytest.mark.parametrize("action", CASE_POST_ACTIONS)
def test_case_actions_refuse_get(client, alice, case, action):
    client.force_login(alice)
    assert client.get(case_url(case, action)).status_code == 405
    case.refresh_from_db()
    assert case.status == Status.OPEN


def test_the_outsider_sees_an_empty_inbox_that_says_why(client, outsider, case):
    client.force_login(outsider)
    response = client.get("/inbox/")
    assert response.status_code == 200
    assert "not in any team" in text(response)
    assert case.summary not in text(response)
    assert "Nothing waiting here." in text(response)


@pytest.mark.parametrize("action", CASE_GET_ACTIONS)
def test_the_outsider_gets_404_for_case_pages(client, outsider, case, action):
    client.force_login(outsider)
    response = client.get(case_url(case, action))
    assert response.status_code == 404
    assert case.summary not in text(response)


@pytest.mark.parametrize("action", CASE_POST_ACTIONS)
def test_the_outsider_gets_404_for_case_actions_and_changes_nothing(
    client, outsider, support, case, action
):
    client.force_login(outsider)
    events = AuditEvent.objects.count()
    response = client.post(case_url(case, action), {"decision": "approve", "queue": "support"})
    assert response.status_code == 404
    case.refresh_from_db()
    assert case.status == Status.OPEN and case.queue.slug == "refunds"
    assert AuditEvent.objects.count() == events


def test_next_case_for_the_outsider_claims_nothing(client, outsider, case):
    client.force_login(outsider)
    response = client.post("/inbox/next/")
    assert response.status_code == 302
    assert response.url == "/inbox/"
    case.refresh_from_db()
    assert case.status == Status.OPEN
    assert any("no open case" in m for m in flashed(response))


@pytest.mark.parametrize("action", CASE_GET_ACTIONS)
def test_a_reviewer_of_another_team_gets_404_for_an_ops_case_page(client, lena, case, action):
    client.force_login(lena)
    response = client.get(case_url(case, action))
    assert response.status_code == 404
    assert case.summary not in text(response)


@pytest.mark.parametrize("action", CASE_POST_ACTIONS)
def test_a_reviewer_of_another_team_gets_404_for_ops_case_actions(
    client, lena, support, compliance, case, action
):
    client.force_login(lena)
    events = AuditEvent.objects.count()
    response = client.post(case_url(case, action), {"decision": "approve", "queue": "compliance"})
    assert response.status_code == 404
    case.refresh_from_db()
    assert case.status == Status.OPEN and case.queue.slug == "refunds"
    assert AuditEvent.objects.count() == events


def test_a_reviewer_of_another_team_does_see_her_own_teams_case(client, lena, compliance_case):
    client.force_login(lena)
    response = client.get(case_url(compliance_case))
    assert response.status_code == 200
    assert compliance_case.summary in text(response)


def test_an_unknown_case_id_is_404(client, alice):
    client.force_login(alice)
    assert client.get(f"/cases/{uuid.uuid4()}/").status_code == 404
    assert client.post(f"/cases/{uuid.uuid4()}/claim/").status_code == 404


def test_a_case_action_without_a_csrf_token_is_refused(alice, case):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(case_url(case, "claim/"))
    assert response.status_code == 403
    case.refresh_from_db()
    assert case.status == Status.OPEN


def test_login_with_the_password_opens_the_inbox(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response.url == "/inbox/"
    assert client.get("/inbox/").status_code == 200


def test_sign_out_is_a_post_that_ends_the_session(client, alice):
    client.force_login(alice)
    page = client.get("/inbox/")
    assert 'action="/accounts/logout/"' in text(page) and "Sign out" in text(page)
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert response.url == "/accounts/login/"
    assert client.get("/inbox/").status_code == 302


def test_sign_out_by_get_is_refused(client, alice):
    client.force_login(alice)
    assert client.get("/accounts/logout/").status_code == 405
    assert client.get("/inbox/").status_code == 200


def test_a_case_stays_unclaimed_by_the_outsider_even_with_a_guessed_token(
    client, outsider, claimed
):
    client.force_login(outsider)
    response = client.post(
        case_url(claimed, "decide/"),
        {"claim_token": str(claimed.claim_token), "decision": "approve"},
    )
    assert response.status_code == 404
    assert Escalation.objects.get(pk=claimed.pk).status == Status.CLAIMED
