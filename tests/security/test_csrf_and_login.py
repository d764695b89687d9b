"""Forged requests and password guessing.

CSRF: every state-changing form of the web UI is refused without the token and, with a valid
token, from another origin; the same request from the page's own origin goes through (so the
refusals are the token's doing). The agent API takes no cookies: a signed-in person's browser
cannot be made to post a case for them.

Login: django-axes locks a username at one address after HANDOFF_LOGIN_FAILURE_LIMIT (5) wrong
passwords for the cool-off (15 min): the right password is refused too, a forged
X-Forwarded-For does not get round it, other people still sign in, and a success resets the
count.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from escalation.models import AuditEvent, Escalation, Status
from tests.api.helpers import ESCALATIONS, create_body
from tests.factories import PASSWORD
from tests.security.routes import WEB, request, web_path

pytestmark = pytest.mark.django_db

POST_FORMS = sorted(name for name, method in WEB.items() if method == "POST")


def signed_in_with_csrf(user) -> tuple[Client, str]:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/inbox/")  # sets the CSRF cookie, as the page a form sits on does
    return client, client.cookies["csrftoken"].value


def test_every_form_post_without_the_csrf_token_is_refused(mona, ops_objects):
    client, _ = signed_in_with_csrf(mona)
    events = AuditEvent.objects.count()

    for name in POST_FORMS:
        response = request(client, "POST", web_path(name, ops_objects), ops_objects)

        assert response.status_code == 403, (name, response.status_code)
    assert AuditEvent.objects.count() == events
    assert Escalation.objects.get(pk=ops_objects["case"].pk).status == Status.CLAIMED


def test_every_form_post_from_another_origin_is_refused_even_with_a_token(mona, ops_objects):
    client, token = signed_in_with_csrf(mona)
    events = AuditEvent.objects.count()

    for name in POST_FORMS:
        response = client.post(
            web_path(name, ops_objects),
            {"csrfmiddlewaretoken": token, "decision": "approve", "queue": "support"},
            headers={"Origin": "https://evil.example"},
        )

        assert response.status_code == 403, (name, response.status_code)
    assert AuditEvent.objects.count() == events


def test_the_same_post_from_the_pages_own_origin_goes_through(mona, ops_objects):
    client, token = signed_in_with_csrf(mona)
    path = web_path("case-release", ops_objects)  # a manager may release anyone's claim

    response = client.post(
        path, {"csrfmiddlewaretoken": token}, headers={"Origin": "http://testserver"}
    )

    assert response.status_code == 302
    assert Escalation.objects.get(pk=ops_objects["case"].pk).status == Status.OPEN


def test_htmx_posts_carry_the_token_in_a_header(mona, ops_objects):
    client, token = signed_in_with_csrf(mona)

    response = client.post(
        web_path("case-heartbeat", ops_objects),
        {"claim_token": str(ops_objects["case"].claim_token)},
        headers={"X-CSRFToken": token, "HX-Request": "true"},
    )

    assert response.status_code != 403


def test_the_sign_in_form_needs_its_token_too(alice):
    response = Client(enforce_csrf_checks=True).post(
        "/accounts/login/", {"username": "alice", "password": PASSWORD}
    )

    assert response.status_code == 403


def test_a_browser_session_carries_no_authority_over_the_agent_api(client, mona, refunds):
    client.force_login(mona)

    response = client.post(ESCALATIONS, create_body(), content_type="application/json")

    assert response.status_code == 401
    assert not Escalation.objects.exists()


# --- login throttling ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Every attempt below checks a password: a cheap hasher keeps this file fast (autouse, so
    # it is set before the users' passwords are hashed).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def sign_in(client: Client, username: str, password: str, **headers):
    return client.post(
        "/accounts/login/", {"username": username, "password": password}, headers=headers
    )


def signed_in(client: Client) -> bool:
    return client.get("/inbox/").status_code == 200


def fail(client: Client, username: str, times: int, **headers) -> None:
    for _ in range(times):
        response = sign_in(client, username, "wrong-password", **headers)
        # The form again, or (from the fifth on) the lock page.
        assert response.status_code in (200, 429) and not signed_in(client)


def test_five_wrong_passwords_lock_the_username_even_against_the_right_one(client, alice):
    fail(client, "alice", 5)

    response = sign_in(client, "alice", PASSWORD)

    assert response.status_code == 429
    assert "Too many sign-in attempts" in response.content.decode()
    assert not signed_in(client)


def test_the_lock_page_has_the_sites_strict_csp(client, alice):
    fail(client, "alice", 5)

    response = sign_in(client, "alice", PASSWORD)

    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert "<script>" not in response.content.decode()


def test_four_wrong_passwords_do_not_lock(client, alice):
    for _ in range(4):
        assert sign_in(client, "alice", "wrong-password").status_code == 200

    sign_in(client, "alice", PASSWORD)

    assert signed_in(client)


def test_a_forged_forwarded_for_header_does_not_reset_the_count(client, alice):
    for n in range(5):
        fail(client, "alice", 1, **{"X-Forwarded-For": f"203.0.113.{n}"})

    response = sign_in(client, "alice", PASSWORD, **{"X-Forwarded-For": "198.51.100.7"})

    assert response.status_code == 429


def test_another_person_still_signs_in_while_one_is_locked(client, alice, bob):
    fail(client, "alice", 5)

    sign_in(Client(), "alice", PASSWORD)  # still locked
    other = Client()
    sign_in(other, "bob", PASSWORD)

    assert signed_in(other)


def test_the_lock_ends_after_the_cool_off(client, alice):
    fail(client, "alice", 5)
    assert sign_in(client, "alice", PASSWORD).status_code == 429

    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        sign_in(client, "alice", PASSWORD)
        assert signed_in(client)


def test_a_successful_sign_in_resets_the_count(client, alice):
    fail(client, "alice", 4)
    sign_in(client, "alice", PASSWORD)
    client.post("/accounts/logout/")

    fail(client, "alice", 4)
    sign_in(client, "alice", PASSWORD)

    assert signed_in(client)


def test_the_admin_sign_in_is_throttled_too(client, db):
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    for _ in range(5):
        client.post("/admin/login/", {"username": "root", "password": "nope"})

    response = client.post("/admin/login/", {"username": "root", "password": PASSWORD})

    assert response.status_code == 429
    assert client.get("/admin/").status_code == 302
