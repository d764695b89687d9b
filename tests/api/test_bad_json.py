"""Bad JSON never reaches the database: malformed text, NaN/Infinity, overflowing numbers,
NUL characters, lone surrogates and nesting past 32 levels are 400s (code malformed_json); a
body over 1 MiB is a JSON 413, with or without a Content-Length."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from django.test.client import AsyncClientHandler, FakePayload

from escalation.models import AgentKey, Escalation
from tests.api.helpers import (
    ESCALATIONS,
    assert_error,
    bearer,
    case_path,
    create_body,
    post_json,
    row_counts,
)
from tests.factories import make_case

pytestmark = pytest.mark.django_db

MIB = 1024 * 1024
VALID = json.dumps(create_body())


def with_context(raw_context: str) -> str:
    """A valid create body whose context is the given raw JSON text."""
    return VALID[: VALID.index('"context": ') + len('"context": ')] + raw_context + "}"


def nested(levels: int) -> dict:
    """`levels` objects, each inside the one before."""
    value: dict = {}
    for _ in range(levels - 1):
        value = {"d": value}
    return value


def body_nested(levels: int) -> dict:
    """A create body nested `levels` deep in all, counting the body object itself as 1."""
    return create_body(context=nested(levels - 1))


def test_with_context_builds_valid_json():
    assert json.loads(with_context('{"a": 1}'))["context"] == {"a": 1}


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param('{"queue": "refunds",', id="truncated"),
        pytest.param("{'queue': 'refunds'}", id="single-quotes"),
        pytest.param("not json at all", id="text"),
        pytest.param(VALID + "}", id="trailing-garbage"),
        pytest.param(with_context('{"n": NaN}'), id="NaN"),
        pytest.param(with_context('{"n": Infinity}'), id="Infinity"),
        pytest.param(with_context('{"n": -Infinity}'), id="-Infinity"),
        pytest.param(with_context('{"n": 1e400}'), id="1e400"),
        pytest.param(with_context('{"n": -1e400}'), id="-1e400"),
        pytest.param(with_context('{"n": 9223372036854775808}'), id="int-past-int64"),
        pytest.param(with_context('{"n": ' + "9" * 30 + "}"), id="30-digit-int"),
        pytest.param(with_context('{"s": "a\\u0000b"}'), id="escaped-NUL-in-value"),
        pytest.param(with_context('{"a\\u0000": 1}'), id="escaped-NUL-in-key"),
        pytest.param(with_context('{"s": "\\ud800"}'), id="lone-high-surrogate"),
        pytest.param(with_context('{"s": "\\udc00x"}'), id="lone-low-surrogate"),
        pytest.param(with_context('{"\\ud800": 1}'), id="lone-surrogate-in-key"),
        pytest.param(
            with_context('{"s": "\udc00"}').encode("utf-8", "surrogatepass"),
            id="raw-lone-surrogate",
        ),
        pytest.param(with_context('{"s": "a\\u0000b"}').encode("utf-16"), id="utf16-NUL"),
        pytest.param(json.dumps(body_nested(40)), id="40-deep"),
        pytest.param(json.dumps(body_nested(33)), id="33-deep"),
        pytest.param("[" * 100_000 + "]" * 100_000, id="100000-deep-array"),
        pytest.param(b'{"queue": "\xff\xfe"}', id="invalid-utf8"),
    ],
)
def test_create_refuses_bad_json_before_touching_the_database(api, raw):
    before = row_counts()

    response = post_json(api, ESCALATIONS, raw)

    assert_error(response, 400, "malformed_json")
    assert row_counts() == before


def test_json_nested_exactly_32_levels_is_accepted(api):
    raw = json.dumps(body_nested(32))

    response = post_json(api, ESCALATIONS, raw)

    assert response.status_code == 201, response.content
    assert Escalation.objects.count() == 1


def test_json_nested_33_levels_is_refused_as_too_deep(api):
    response = post_json(api, ESCALATIONS, json.dumps(body_nested(33)))

    error = assert_error(response, 400, "malformed_json")
    assert "32" in error["message"]
    assert not Escalation.objects.exists()


def test_an_escaped_backslash_before_u0000_is_text_not_a_nul(api):
    raw = with_context('{"path": "C:\\\\u0000"}')

    response = post_json(api, ESCALATIONS, raw)

    assert response.status_code == 201, response.content
    assert Escalation.objects.get().context["path"] == "C:\\u0000"


def test_surrogate_pairs_and_large_finite_numbers_are_accepted(api):
    raw = with_context('{"emoji": "\\ud83d\\ude00", "n": 1e300, "big": 9223372036854775807}')

    response = post_json(api, ESCALATIONS, raw)

    assert response.status_code == 201, response.content
    assert Escalation.objects.get().context["emoji"] == "\U0001f600"


def test_an_empty_body_is_an_empty_object_so_the_required_fields_are_named(api):
    before = row_counts()

    response = post_json(api, ESCALATIONS, "")

    assert_error(response, 400, "invalid")
    assert {"queue", "summary", "confidence", "context"} <= set(response.json()["error"]["fields"])
    assert row_counts() == before


def test_a_form_body_is_refused_as_an_unsupported_media_type(api):
    before = row_counts()

    response = api.post(ESCALATIONS, data={"queue": "refunds"})

    assert_error(response, 415, "unsupported_media_type")
    assert row_counts() == before


# --- 413 -------------------------------------------------------------------------------------


def big_body(size: int) -> str:
    """A syntactically valid create body of at least `size` bytes."""
    return json.dumps(create_body(context={"blob": "x" * size}))


def test_a_body_over_1_mib_is_a_json_413(api):
    before = row_counts()

    response = post_json(api, ESCALATIONS, big_body(2 * MIB))

    assert_error(response, 413, "body_too_large")
    assert row_counts() == before


def test_a_body_just_over_1_mib_is_a_json_413(api):
    raw = big_body(MIB)
    assert MIB < len(raw) < MIB + 1000

    response = post_json(api, ESCALATIONS, raw)

    assert_error(response, 413, "body_too_large")
    assert not Escalation.objects.exists()


def test_a_context_update_over_1_mib_is_a_json_413(api, agent, refunds):
    case = make_case(agent=agent, queue=refunds)
    before = row_counts()

    response = post_json(api, case_path(case, "/context"), {"note": "x" * (2 * MIB)})

    assert_error(response, 413, "body_too_large")
    assert row_counts() == before


def asgi_post_without_content_length(path: str, body: bytes, headers: dict[str, str]):
    """POST through the ASGI handler (as under uvicorn) with a chunked body: no Content-Length."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
        "headers": [
            (b"content-type", b"application/json"),
            (b"transfer-encoding", b"chunked"),
            *((name.lower().encode(), value.encode()) for name, value in headers.items()),
        ],
        "_body_file": FakePayload(body),
    }
    return async_to_sync(AsyncClientHandler(enforce_csrf_checks=False))(scope)


def test_a_body_over_1_mib_without_content_length_is_a_json_413(agent, refunds):
    _, raw = AgentKey.generate(agent)
    before = row_counts()

    response = asgi_post_without_content_length(
        ESCALATIONS, big_body(2 * MIB).encode(), bearer(raw)
    )

    # The raw ASGI handler's response has no .json() helper: parse the envelope here.
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)["error"]["code"] == "body_too_large"
    assert row_counts() == before


def test_a_small_body_without_content_length_is_read(agent, refunds):
    _, raw = AgentKey.generate(agent)

    response = asgi_post_without_content_length(ESCALATIONS, VALID.encode(), bearer(raw))

    assert response.status_code == 201, response.content
    assert Escalation.objects.count() == 1


def test_the_walk_checks_numbers_at_any_place_the_top_level_too():
    from escalation.api.parsers import MAX_INT, BadJSON, check_value, loads_strict

    check_value({"a": [MAX_INT, -MAX_INT, 1e308, True]}, strings=False)
    for bad in (MAX_INT + 1, [[-MAX_INT - 1]], {"n": float("inf")}, float("-inf")):
        with pytest.raises(BadJSON):
            check_value(bad, strings=False)
    with pytest.raises(BadJSON, match="too large"):
        loads_strict(b"[1, 2, " + b"9" * 4000 + b"]")
    with pytest.raises(BadJSON):
        loads_strict(b"9" * 5000)  # past Python's digit limit: malformed, not a hang
