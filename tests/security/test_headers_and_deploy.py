"""Security headers on every page, and the production settings behind TLS.

Every answer — pages, fragments, error pages, the sign-in and lock-out pages, the API's JSON,
its docs, the health probes — carries the CSP (nothing inline, nothing from elsewhere, no
framing), nosniff, Referrer-Policy and X-Frame-Options. With DJANGO_HTTPS=1 (tested in a fresh
process, as settings are read once): HSTS, Secure `__Host-` cookies, the HTTPS redirect with the
health probes exempt, X-Forwarded-Proto trusted, and DJANGO_SSL_REDIRECT=0 for a proxy that
redirects by itself. `check --deploy` itself is tests/test_deploy_check.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from tests.api.helpers import API, ESCALATIONS, client_for
from tests.security.routes import MANAGER_OBJECT_PAGES, MANAGER_PAGES, WEB, web_path

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    parts = (part.strip().split() for part in policy.split(";") if part.strip())
    return {part[0]: part[1:] for part in parts}


def assert_secure_headers(response, where: str) -> None:
    csp = directives(response)
    assert csp["default-src"] == ["'self'"], where
    assert csp["script-src"] == ["'self'"], where
    assert csp["frame-ancestors"] == ["'none'"], where
    assert csp["object-src"] == ["'none'"], where
    assert csp["base-uri"] == ["'self'"] and csp["form-action"] == ["'self'"], where
    assert not any("unsafe" in value for values in csp.values() for value in values), where
    assert response["X-Content-Type-Options"] == "nosniff", where
    assert response["Referrer-Policy"] == "same-origin", where
    assert response["X-Frame-Options"] == "DENY", where
    assert response["Cross-Origin-Opener-Policy"] == "same-origin", where


def test_every_page_a_manager_opens_carries_the_headers(client, mona, ops_objects):
    client.force_login(mona)
    pages = {name: method for name, method in WEB.items() if method == "GET"}

    for name in pages:
        response = client.get(web_path(name, ops_objects))
        assert response.status_code == 200, (name, response.status_code)
        assert_secure_headers(response, name)
    fragment = client.get("/inbox/", headers={"HX-Request": "true", "HX-Target": "case-list"})
    assert_secure_headers(fragment, "inbox fragment")


def test_refusals_and_error_pages_carry_the_headers(client, alice, ops_objects):
    client.force_login(alice)
    for name in MANAGER_PAGES | MANAGER_OBJECT_PAGES:
        response = client.get(web_path(name, ops_objects))
        assert response.status_code in (403, 405)
        assert_secure_headers(response, name)
    missing = client.get("/cases/00000000-0000-0000-0000-000000000000/")
    assert missing.status_code == 404
    assert_secure_headers(missing, "404")


@pytest.mark.parametrize(
    "path", ["/accounts/login/", "/healthz", f"{API}/schema", f"{API}/docs", "/admin/login/"]
)
def test_public_pages_carry_the_headers(client, path):
    response = client.get(path)

    assert response.status_code == 200, response.status_code
    assert_secure_headers(response, path)


def test_api_answers_and_errors_carry_the_headers(agent, refunds):
    assert_secure_headers(client_for(agent).get(ESCALATIONS), "list")
    assert_secure_headers(Client().get(ESCALATIONS), "401")
    assert_secure_headers(client_for(agent).get(f"{API}/nowhere"), "404")


# --- production settings, in a fresh process -------------------------------------------------

PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.test import Client
out = {"session": settings.SESSION_COOKIE_NAME, "csrf": settings.CSRF_COOKIE_NAME}
http = Client().get("/accounts/login/")
out["http_login"] = [http.status_code, http.get("Location", "")]
out["http_healthz"] = Client().get("/healthz").status_code
proxied = Client().get("/accounts/login/", headers={"X-Forwarded-Proto": "https"})
out["proxied"] = [proxied.status_code, proxied.get("Strict-Transport-Security", "")]
cookie = proxied.cookies.get(settings.CSRF_COOKIE_NAME)
out["csrf_cookie"] = {k: cookie[k] for k in ("secure", "path", "domain", "samesite")}
print(json.dumps(out))
"""


def production(tmp_path, **env: str) -> dict:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_URL", "HANDOFF_"))
    }
    environment.update(
        DJANGO_SETTINGS_MODULE="handoff.settings",
        DJANGO_SECRET_KEY="a-production-like-secret-key-that-is-long-and-random-0123456789",
        DJANGO_ALLOWED_HOSTS="testserver",
        HANDOFF_VAR_DIR=str(tmp_path),  # SQLite: the probe needs no database table
        **env,
    )
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_behind_tls_cookies_are_secure_host_cookies_and_http_is_redirected(tmp_path):
    out = production(tmp_path, DJANGO_HTTPS="1")

    assert out["session"] == "__Host-sessionid" and out["csrf"] == "__Host-csrftoken"
    assert out["http_login"] == [301, "https://testserver/accounts/login/"]
    assert out["http_healthz"] == 200  # probes talk plain HTTP inside the network
    status, hsts = out["proxied"]
    assert status == 200
    assert hsts == "max-age=31536000; includeSubDomains; preload"
    assert out["csrf_cookie"]["secure"] is True and out["csrf_cookie"]["path"] == "/"
    assert out["csrf_cookie"]["domain"] == ""  # host-only, as __Host- requires


def test_the_redirect_can_be_left_to_a_proxy_that_does_it(tmp_path):
    out = production(tmp_path, DJANGO_HTTPS="1", DJANGO_SSL_REDIRECT="0")

    assert out["http_login"][0] == 200
    assert out["session"] == "__Host-sessionid"


def test_without_tls_the_cookies_keep_their_plain_names(tmp_path):
    out = production(tmp_path, DJANGO_HTTPS="0")

    assert out["session"] == "sessionid" and out["http_login"][0] == 200
    assert out["proxied"][1] == ""  # no HSTS over plain HTTP
