"""The OpenAPI schema and docs page, and the error envelope everywhere under /api/: unknown
paths, wrong methods and server errors all answer JSON, never HTML or a stack trace."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.test import Client

from tests.api.helpers import (
    API,
    ESCALATIONS,
    assert_error,
    case_path,
    client_for,
    create_body,
    post_json,
)

pytestmark = pytest.mark.django_db

# The agent API's paths as the spec's table names them (decisions is not built yet).
SPEC_PATHS = {
    "/api/v1/escalations": {"get", "post"},
    "/api/v1/escalations/batch": {"post"},
    "/api/v1/escalations/{id}": {"get"},
    "/api/v1/escalations/{id}/context": {"post"},
    "/api/v1/escalations/{id}/cancel": {"post"},
    "/api/v1/escalations/{id}/resolution": {"get"},
    "/api/v1/queues": {"get"},
    "/api/v1/labels": {"get"},
    "/api/v1/calibration": {"get"},
}


# --- OpenAPI ---------------------------------------------------------------------------------


def test_the_schema_is_openapi_3_json_without_a_key():
    response = Client().get(f"{API}/schema", {"format": "json"})

    assert response.status_code == 200
    assert "json" in response["Content-Type"]
    assert response.json()["openapi"].startswith("3.")


def test_the_schema_documents_every_operation_of_the_spec_under_its_spec_path():
    paths = Client().get(f"{API}/schema", {"format": "json"}).json()["paths"]

    for path, methods in SPEC_PATHS.items():
        assert path in paths, f"{path} missing from {sorted(paths)}"
        assert methods <= set(paths[path]), (path, sorted(paths[path]))


def test_the_schema_generates_and_validates_without_warnings(tmp_path):
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml")
    )


def test_the_schema_declares_bearer_auth_and_the_error_envelope():
    schema = Client().get(f"{API}/schema", {"format": "json"}).json()

    schemes = schema["components"]["securitySchemes"]
    assert any(s == {**s, "type": "http", "scheme": "bearer"} for s in schemes.values())
    assert "Error" in schema["components"]["schemas"]
    create = schema["paths"]["/api/v1/escalations"]["post"]
    assert {"201", "200", "400", "401", "403", "409", "413", "422", "429"} <= set(
        create["responses"]
    )


def test_the_docs_page_is_html_with_locally_served_assets():
    client = Client()

    response = client.get(f"{API}/docs")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "https://" not in page
    assert not re.search(r"""(?:src|href)=["']//""", page)  # no protocol-relative CDN either
    assets = re.findall(r"""(?:src|href)=["'](/static/[^"']+)["']""", page)
    assert any(a.endswith(".js") for a in assets)
    assert any(a.endswith(".css") for a in assets)
    for asset in assets:
        served = client.get(asset)
        assert served.status_code == 200, asset
        if hasattr(served, "close"):
            served.close()


# --- unknown paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        f"{API}/nothing-here",
        f"{API}/escalations/0f6c1b6e-1d2a-4f3b-9c8d-7e6f5a4b3c2d/nothing",
        f"{API}/escalations/",
        "/api/v2/escalations",
        "/api/",
    ],
)
def test_an_unknown_path_under_api_is_a_json_404(api, path):
    assert_error(api.get(path), 404, "not_found")
    assert_error(post_json(api, path, {}), 404, "not_found")


def test_an_unknown_path_is_a_json_404_without_a_key_too():
    assert_error(Client().get(f"{API}/nothing-here"), 404, "not_found")


# --- wrong methods ---------------------------------------------------------------------------

WRONG_METHODS = [
    (ESCALATIONS, "put"),
    (ESCALATIONS, "patch"),
    (ESCALATIONS, "delete"),
    (f"{ESCALATIONS}/{{id}}", "post"),
    (f"{ESCALATIONS}/{{id}}", "put"),
    (f"{ESCALATIONS}/{{id}}", "patch"),
    (f"{ESCALATIONS}/{{id}}", "delete"),
    (f"{ESCALATIONS}/{{id}}/context", "get"),
    (f"{ESCALATIONS}/{{id}}/context", "put"),
    (f"{ESCALATIONS}/{{id}}/context", "delete"),
    (f"{ESCALATIONS}/{{id}}/cancel", "get"),
    (f"{ESCALATIONS}/{{id}}/cancel", "put"),
    (f"{ESCALATIONS}/{{id}}/cancel", "delete"),
    (f"{API}/queues", "post"),
    (f"{API}/queues", "delete"),
    (f"{API}/labels", "post"),
    (f"{API}/labels", "delete"),
]


@pytest.mark.parametrize("path, method", WRONG_METHODS)
def test_a_wrong_method_is_a_json_405(api, case, path, method):
    response = getattr(api, method)(path.format(id=case.pk))

    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"]
    assert method.upper() not in response["Allow"]


@pytest.mark.parametrize("path", [f"{API}/schema", f"{API}/docs"])
def test_a_wrong_method_on_the_schema_or_docs_is_a_json_405(path):
    response = Client().post(path)

    assert_error(response, 405, "method_not_allowed")


# --- CSRF: agents are programs without cookies -----------------------------------------------


def test_an_agent_posts_without_any_csrf_token(agent, refunds):
    client = client_for(agent, enforce_csrf_checks=True)

    created = post_json(client, ESCALATIONS, create_body())
    case_id = created.json()["id"]
    context = post_json(client, case_path(case_id, "/context"), {"note": "more"})
    cancelled = post_json(client, case_path(case_id, "/cancel"), {})

    assert created.status_code == 201
    assert context.status_code == 201
    assert cancelled.status_code == 200


# --- server errors ---------------------------------------------------------------------------

SECRET = "database password is hunter2"


def _explode(*args, **kwargs):
    raise RuntimeError(SECRET)


def assert_bland_500(response) -> None:
    assert_error(response, 500, "server_error")
    text = response.content.decode()
    for leak in ("Traceback", "RuntimeError", SECRET, 'File "', ".py"):
        assert leak not in text, leak


def test_a_server_error_in_a_read_is_json_without_a_traceback(monkeypatch, agent, case):
    monkeypatch.setattr("escalation.api.views.own_case", _explode)
    client = client_for(agent, raise_request_exception=False)

    assert_bland_500(client.get(case_path(case)))
    assert_bland_500(post_json(client, case_path(case, "/cancel"), {}))


def test_a_server_error_in_a_create_is_json_without_a_traceback(monkeypatch, agent, refunds):
    monkeypatch.setattr("escalation.api.views.case_resource", _explode)
    client = client_for(agent, raise_request_exception=False)

    assert_bland_500(post_json(client, ESCALATIONS, create_body()))


def test_a_server_error_in_a_list_is_json_without_a_traceback(monkeypatch, agent, refunds):
    monkeypatch.setattr("escalation.api.views.own_cases", _explode)
    client = client_for(agent, raise_request_exception=False)

    assert_bland_500(client.get(ESCALATIONS))
    assert_bland_500(client.get(f"{API}/labels"))


@pytest.mark.django_db(transaction=True)
def test_a_server_error_in_the_long_poll_is_json_without_a_traceback(monkeypatch, agent, case):
    monkeypatch.setattr("escalation.api.longpoll.case_resource", _explode)
    client = client_for(agent, raise_request_exception=False)

    assert_bland_500(client.get(case_path(case, "/resolution"), {"wait": 0}))
