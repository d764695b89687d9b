"""Property-based fuzzing of the two endpoints that take an agent's free-form JSON: create and
context. Whatever arrives — arbitrary JSON, huge strings, deep nesting, NaN/Infinity, invalid
UTF-8, duplicate keys, numbers as strings, nulls, in valid shapes or broken ones — the answer is
a success resource or the JSON error envelope, never a 500, and a refused body writes nothing.

tests/api/test_bad_json.py pins each known bad input to its exact answer; this file searches the
space around them. Examples are bounded so the file runs in seconds.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from escalation.models import ContextUpdate, Escalation
from tests.api.helpers import ESCALATIONS, case_path, create_body
from tests.factories import make_case

pytestmark = pytest.mark.django_db

FUZZ = settings(
    # HANDOFF_FUZZ_EXAMPLES=2000 for a deeper run by hand.
    max_examples=int(os.environ.get("HANDOFF_FUZZ_EXAMPLES", "250")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ANSWERS = {200, 201, 400, 403, 409, 413, 429}
CREATE_FIELDS = [
    "queue",
    "summary",
    "confidence",
    "priority",
    "reason",
    "context",
    "proposed_action",
    "external_id",
    "metadata",
    "callback_url",
    "agent_version",
]

text = st.text(st.characters(codec="utf-8"), max_size=40) | st.text(max_size=40)  # + surrogates
numbers = (
    st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
)
leaves = st.none() | st.booleans() | numbers | text | numbers.map(str)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=25,
)
# A create body near the valid one: each field kept, dropped, or replaced by anything, plus
# stray fields; so the fuzzer gets past the first refusal as often as it stops at it.
objects = st.dictionaries(text, json_values, max_size=5)
plausible = st.fixed_dictionaries(
    {},
    optional={
        "summary": text,
        "confidence": st.floats(min_value=0, max_value=1),
        "priority": st.sampled_from(["low", "normal", "high", "urgent"]),
        "reason": st.from_regex(r"[a-z0-9_-]{0,64}", fullmatch=True),
        "context": objects,
        "proposed_action": objects | st.none(),
        "external_id": text,
        "metadata": objects,
        "agent_version": text,
    },
)
near_valid_bodies = st.builds(
    lambda typed, replaced, dropped, extra: {
        **{k: v for k, v in create_body(queue="refunds").items() if k not in dropped},
        **typed,
        **replaced,
        **extra,
    },
    plausible,
    st.dictionaries(st.sampled_from(CREATE_FIELDS), json_values, max_size=2),
    st.sets(st.sampled_from(CREATE_FIELDS), max_size=1),
    st.dictionaries(text, json_values, max_size=1),
)


def _deep(levels: int, kind: str) -> str:
    if kind == "array":
        return "[" * levels + "]" * levels
    return '{"a":' * levels + "1" + "}" * levels


@st.composite
def raw_bodies(draw) -> bytes:
    """Bodies as bytes, broken the ways a careless or hostile client breaks them."""
    base = json.dumps(draw(near_valid_bodies | json_values), allow_nan=True)
    how = draw(
        st.sampled_from(
            ["as-is", "duplicate-key", "deep", "huge-string", "invalid-utf8", "cut", "escapes"]
        )
    )
    if how == "duplicate-key":
        # {"summary": <anything>, ...the body...}: the later key wins in the parser.
        value = json.dumps(draw(json_values), allow_nan=True)
        key = draw(st.sampled_from(CREATE_FIELDS))
        base = f'{{"{key}": {value}, ' + base[1:] if base.startswith("{") and base != "{}" else base
    elif how == "deep":
        levels = draw(st.integers(min_value=30, max_value=50_000))
        base = (
            json.dumps(create_body())[:-1]
            + ', "context": '
            + _deep(levels, draw(st.sampled_from(["array", "object"])))
            + "}"
        )
    elif how == "huge-string":
        size = draw(st.sampled_from([199, 200, 201, 10_000, 1024 * 1024 - 200, 1024 * 1024 + 10]))
        field = draw(st.sampled_from(["summary", "external_id", "context"]))
        filler = "x" * size
        body = create_body(**{field: {"t": filler} if field == "context" else filler})
        base = json.dumps(body)
    elif how == "escapes":
        escape = draw(st.sampled_from(["\\u0000", "\\ud800", "\\udfff", "\\uDBFF\\uDFFF", "\\"]))
        base = json.dumps(create_body(summary="s"))[:-1] + f', "note": "{escape}"' + "}"
    raw = base.encode("utf-8", "surrogatepass")
    if how == "invalid-utf8":
        at = draw(st.integers(min_value=0, max_value=len(raw)))
        junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]))
        raw = raw[:at] + junk + raw[at:]
    elif how == "cut":
        raw = raw[: draw(st.integers(min_value=0, max_value=len(raw)))]
    return raw


def post_raw(client, path: str, raw: bytes):
    return client.post(path, data=raw, content_type="application/json")


def assert_answered_properly(response) -> dict:
    """A documented status, JSON always, and the error envelope for every refusal."""
    event(f"status {response.status_code}")
    assert response.status_code in ANSWERS, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    if response.status_code >= 400:
        assert set(body) == {"error"}
        assert isinstance(body["error"]["code"], str) and body["error"]["code"]
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body


def same_json(a, b) -> bool:
    """Equal as JSON numbers compare: jsonb keeps a number's decimal value, so 1.5e17 may come
    back as the integer 150000000000000000."""

    def as_floats(value):
        return json.loads(json.dumps(value), parse_int=float)

    return as_floats(a) == as_floats(b)


def assert_created_or_nothing_written(response, cases_before: int) -> None:
    body = assert_answered_properly(response)
    if response.status_code == 201:
        stored = Escalation.objects.get(pk=body["id"])
        assert same_json(stored.context, body["context"]) and stored.summary == body["summary"]
        assert Escalation.objects.count() == cases_before + 1
    else:
        assert Escalation.objects.count() == cases_before


@FUZZ
@given(body=near_valid_bodies)
def test_create_with_arbitrary_json_fields_never_fails_on_the_server(fuzz_api, body):
    before = Escalation.objects.count()
    raw = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")

    response = post_raw(fuzz_api, ESCALATIONS, raw)

    assert_created_or_nothing_written(response, before)


@FUZZ
@given(raw=raw_bodies())
def test_create_with_broken_bodies_never_fails_on_the_server(fuzz_api, raw):
    before = Escalation.objects.count()

    response = post_raw(fuzz_api, ESCALATIONS, raw)

    assert_created_or_nothing_written(response, before)


@pytest.fixture
def open_case(tireless_agent, refunds):
    return make_case(agent=tireless_agent, queue=refunds)


context_bodies = (
    st.fixed_dictionaries({}, optional={"note": json_values | text, "data": json_values})
    | st.dictionaries(text, json_values, max_size=3)
    | json_values
)


def assert_appended_or_nothing_written(response, updates_before: int) -> None:
    answer = assert_answered_properly(response)
    if response.status_code == 201:
        stored = ContextUpdate.objects.get(pk=answer["id"])
        assert same_json(stored.data, answer["data"]) and stored.note == answer["note"]
        assert ContextUpdate.objects.count() == updates_before + 1
    else:
        assert ContextUpdate.objects.count() == updates_before


@FUZZ
@given(body=context_bodies)
def test_context_with_arbitrary_json_never_fails_on_the_server(fuzz_api, open_case, body):
    before = ContextUpdate.objects.count()
    raw = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")

    response = post_raw(fuzz_api, case_path(open_case, "/context"), raw)

    assert_appended_or_nothing_written(response, before)


@FUZZ
@given(raw=raw_bodies())
def test_context_with_broken_bodies_never_fails_on_the_server(fuzz_api, open_case, raw):
    before = ContextUpdate.objects.count()

    response = post_raw(fuzz_api, case_path(open_case, "/context"), raw)

    assert_appended_or_nothing_written(response, before)
