"""POST /api/v1/escalations/batch: each item answered in order as the single create would have
answered it (201, a 200 replay, 400, 403, 409, 422, 429), one bad item spoiling nothing; the
envelope itself is a 400 when it is not {"items": [1..100 items]}, a 413 over 1 MiB."""

from __future__ import annotations

import contextlib
import json

import psycopg
import pytest
from django.db import connection
from django.test import Client

from escalation import audit
from escalation.api import idempotency
from escalation.models import AuditEvent, Escalation, IdempotencyRecord, OutboxItem
from tests.api.helpers import (
    CASE_FIELDS,
    ESCALATIONS,
    assert_error,
    case_path,
    client_for,
    create_body,
    post_json,
    row_counts,
    verbs,
)
from tests.factories import make_case

pytestmark = pytest.mark.django_db

BATCH = f"{ESCALATIONS}/batch"
MIB = 1024 * 1024


def post_batch(client, items, **headers):
    return post_json(client, BATCH, {"items": items}, **headers)


def results_of(response) -> list[dict]:
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"results"}
    return body["results"]


def assert_item_error(result: dict, status: int, code: str) -> dict:
    assert result["status"] == status, result
    assert result["replayed"] is False
    error = result["body"]["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    return error


def keyed(key: str, **overrides) -> dict:
    return {"idempotency_key": key, **create_body(**overrides)}


# --- one answer per item ---------------------------------------------------------------------


def test_a_mixed_batch_answers_every_item_in_order_and_one_bad_item_spoils_nothing(
    agent, refunds, support, compliance
):
    agent.all_queues = False
    agent.save()
    agent.queues.set([refunds, support])
    client = client_for(agent)
    earlier = post_json(
        client, ESCALATIONS, create_body(summary="earlier"), **{"Idempotency-Key": "earlier"}
    )
    post_json(client, ESCALATIONS, create_body(summary="first"), **{"Idempotency-Key": "taken"})
    before = row_counts()

    results = results_of(
        post_batch(
            client,
            [
                create_body(summary="valid"),
                create_body(confidence=1.5),
                create_body(queue="compliance"),
                keyed("twice", summary="same body twice"),
                keyed("twice", summary="same body twice"),
                keyed("earlier", summary="earlier"),
                keyed("taken", summary="another body"),
                keyed("twice", summary="a third body under the key"),
                create_body(queue="support", summary="valid too"),
            ],
        )
    )

    assert [r["status"] for r in results] == [201, 400, 403, 201, 200, 200, 422, 422, 201]
    assert [r["replayed"] for r in results] == [False, False, False, False, True, True] + [
        False
    ] * 3
    assert set(results[0]["body"]) >= CASE_FIELDS
    assert results[0]["body"]["summary"] == "valid"
    assert "confidence" in assert_item_error(results[1], 400, "invalid")["fields"]
    assert assert_item_error(results[2], 403, "queue_not_allowed")["fields"] == {
        "queue": "not one of this agent's queues"
    }
    # A key repeated within the batch replays its first item, as a second request would.
    assert results[4]["body"] == results[3]["body"]
    # A key from an earlier single create replays that create's answer.
    assert results[5]["body"] == earlier.json()
    assert_item_error(results[6], 422, "idempotency_key_reused")
    assert_item_error(results[7], 422, "idempotency_key_reused")
    assert results[8]["body"]["queue"] == "support"
    for i in (0, 3, 8):
        case = Escalation.objects.get(pk=results[i]["body"]["id"])
        assert case.summary == results[i]["body"]["summary"]
    after = row_counts()
    assert after["cases"] == before["cases"] + 3
    assert after["audit"] == before["audit"] + 3
    assert after["outbox"] == before["outbox"] + 3
    assert after["idempotency"] == before["idempotency"] + 1  # "twice"
    assert IdempotencyRecord.objects.get(key="twice").response_body == results[3]["body"]


def test_each_created_case_has_its_audit_event_and_routing_job(
    api, agent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        results = results_of(post_batch(api, [create_body(summary=f"case {i}") for i in range(3)]))

    assert [r["status"] for r in results] == [201, 201, 201]
    assert len(callbacks) == 1  # one doorbell for the batch's routing jobs, after commit
    for result in results:
        case = Escalation.objects.get(pk=result["body"]["id"])
        assert case.agent == agent
        # The routing job ran (eagerly here) once the batch committed.
        assert verbs(case) == ["escalation.created", "escalation.routed"]
        created = AuditEvent.objects.get(escalation=case, verb="escalation.created")
        assert created.actor_kind == "agent"
        assert created.actor_name == "refund-bot"
        assert created.data["context_sha256"] == audit.content_hash(case.context)
        (job,) = OutboxItem.objects.filter(escalation=case)
        assert job.kind == "route"
        assert job.done_at is not None
    assert audit.verify_chain().ok


def test_the_case_resources_in_the_answer_equal_what_get_returns(api):
    results = results_of(
        post_batch(
            api,
            [
                create_body(
                    priority="urgent",
                    metadata={"tier": "gold", "account_value": 125000},
                    proposed_action={"type": "refund", "amount": 12.5},
                    external_id="ticket-1",
                    agent_version="bot 1.2",
                ),
                create_body(reason="policy", context={"b": [1, 2], "a": {"z": None}}),
            ],
        )
    )

    for result in results:
        assert result["status"] == 201
        fetched = api.get(case_path(result["body"]["id"]))
        assert fetched.status_code == 200
        assert fetched.json() == result["body"]


def test_a_batch_of_100_items_creates_100_cases(api, agent, redis_prefix):
    # 100 items are 100 rate tokens, the whole default burst: a bucket of this test's own.
    results = results_of(post_batch(api, [create_body(summary=f"case {i}") for i in range(100)]))

    assert [r["status"] for r in results] == [201] * 100
    assert [r["body"]["summary"] for r in results] == [f"case {i}" for i in range(100)]
    assert Escalation.objects.filter(agent=agent).count() == 100
    assert AuditEvent.objects.filter(verb="escalation.created").count() == 100
    assert OutboxItem.objects.filter(kind="route").count() == 100
    assert audit.verify_chain().ok


def test_an_item_that_is_not_an_object_is_a_400_for_that_item_only(api):
    results = results_of(post_batch(api, ["text", create_body(), None, [1]]))

    assert [r["status"] for r in results] == [400, 201, 400, 400]
    assert assert_item_error(results[0], 400, "invalid")["fields"] == {
        "body": "must be a JSON object"
    }
    assert Escalation.objects.count() == 1


@pytest.mark.parametrize(
    "key", [pytest.param("", id="empty"), pytest.param("k" * 256, id="256-chars"), 42, ["k"]]
)
def test_a_bad_idempotency_key_is_a_400_naming_it(api, key):
    results = results_of(post_batch(api, [{"idempotency_key": key, **create_body()}]))

    assert "idempotency_key" in assert_item_error(results[0], 400, "invalid")["fields"]
    assert not Escalation.objects.exists()


def test_a_null_idempotency_key_is_no_key(api):
    results = results_of(post_batch(api, [{"idempotency_key": None, **create_body()}] * 2))

    assert [r["status"] for r in results] == [201, 201]
    assert not IdempotencyRecord.objects.exists()


def test_a_key_of_a_failed_item_is_not_stored_and_can_be_retried(api):
    results = results_of(
        post_batch(api, [keyed("retry-me", confidence=1.5), keyed("retry-me", summary="fixed")])
    )

    assert [r["status"] for r in results] == [400, 201]
    assert IdempotencyRecord.objects.get().response_body == results[1]["body"]


def test_a_key_from_a_batch_replays_in_a_later_single_create(api):
    results = results_of(post_batch(api, [keyed("from-batch", summary="batched")]))

    single = post_json(
        api, ESCALATIONS, create_body(summary="batched"), **{"Idempotency-Key": "from-batch"}
    )

    assert single.status_code == 200
    assert single["Idempotent-Replayed"] == "true"
    assert single.json() == results[0]["body"]
    assert Escalation.objects.count() == 1


def test_a_replay_in_a_later_batch_answers_200_with_the_original_body(api):
    first = results_of(post_batch(api, [keyed("k1"), keyed("k2", summary="two")]))
    after_first = row_counts()

    again = results_of(post_batch(api, [keyed("k2", summary="two"), keyed("k1")]))

    assert [(r["status"], r["replayed"]) for r in again] == [(200, True), (200, True)]
    assert [r["body"] for r in again] == [first[1]["body"], first[0]["body"]]
    assert row_counts() == after_first


@contextlib.contextmanager
def held_elsewhere(agent, key: str):
    """The key as another request in flight holds it: on PostgreSQL its advisory lock (taken on
    a session of our own), on SQLite its file lock."""
    if connection.vendor != "postgresql":
        with idempotency._file_lock(agent, key):
            yield
        return
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [idempotency._lock_id(agent, key)])
        yield


def test_a_key_in_flight_elsewhere_is_a_409_for_that_item(api, agent, settings, tmp_path):
    settings.VAR_DIR = tmp_path  # SQLite's lock files
    with held_elsewhere(agent, "in-flight"):
        results = results_of(post_batch(api, [keyed("in-flight"), keyed("free")]))

    assert [r["status"] for r in results] == [409, 201]
    assert_item_error(results[0], 409, "idempotency_key_in_use")
    assert results[0]["retry_after"] == 1
    assert "retry_after" not in results[1]
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["free"]


def test_keys_belong_to_one_agent(api, other_api, other_agent):
    mine = results_of(post_batch(api, [keyed("shared-key")]))

    theirs = results_of(post_batch(other_api, [keyed("shared-key")]))

    assert theirs[0]["status"] == 201
    assert theirs[0]["body"]["id"] != mine[0]["body"]["id"]
    assert Escalation.objects.filter(agent=other_agent).count() == 1


# --- 429 per item: the open-case cap and the rate --------------------------------------------


def test_the_open_case_cap_holds_per_item_mid_batch(agent, refunds):
    agent.max_open_cases = 3
    agent.save()
    make_case(agent=agent, queue=refunds)
    client = client_for(agent)
    post_json(client, ESCALATIONS, create_body(summary="kept"), **{"Idempotency-Key": "old"})

    results = results_of(
        post_batch(
            client,
            [
                create_body(confidence=2),  # refused before the cap: counts nothing
                keyed("old", summary="kept"),  # a replay creates nothing
                create_body(summary="the third open case"),
                create_body(summary="one too many"),
                keyed("new", summary="also too many"),
            ],
        )
    )

    assert [r["status"] for r in results] == [400, 200, 201, 429, 429]
    assert_item_error(results[3], 429, "open_case_cap")
    assert_item_error(results[4], 429, "open_case_cap")
    assert Escalation.objects.filter(agent=agent).count() == 3
    assert not IdempotencyRecord.objects.filter(key="new").exists()


def test_a_batch_counts_one_request_per_item_against_the_rate(slow_agent, agent):
    client = client_for(slow_agent)  # two requests, then one every 100 s

    results = results_of(post_batch(client, [create_body(summary=f"{i}") for i in range(4)]))

    assert [r["status"] for r in results] == [201, 201, 429, 429]
    for result in results[2:]:
        assert_item_error(result, 429, "rate_limited")
        assert result["retry_after"] >= 1
    assert Escalation.objects.filter(agent=slow_agent).count() == 2
    # The bucket is empty now: the next request is refused as a whole.
    refused = post_batch(client, [create_body()])
    assert_error(refused, 429, "rate_limited")
    assert int(refused["Retry-After"]) >= 1
    # The bucket is this agent's alone.
    assert results_of(post_batch(client_for(agent), [create_body()]))[0]["status"] == 201


# --- the envelope ----------------------------------------------------------------------------


def test_101_items_are_a_400_and_nothing_is_created(api):
    before = row_counts()

    response = post_batch(api, [create_body()] * 101)

    assert "items" in assert_error(response, 400, "invalid")["fields"]
    assert row_counts() == before


@pytest.mark.parametrize(
    "envelope, field",
    [
        pytest.param({"items": []}, "items", id="empty-list"),
        pytest.param({}, "items", id="items-missing"),
        pytest.param({"items": create_body()}, "items", id="items-an-object"),
        pytest.param({"items": "x"}, "items", id="items-a-string"),
        pytest.param({"items": None}, "items", id="items-null"),
        pytest.param({"items": [create_body()], "itmes": []}, "itmes", id="unknown-field"),
        pytest.param([create_body()], "body", id="a-list"),
        pytest.param("items", "body", id="a-string"),
        pytest.param(7, "body", id="a-number"),
    ],
)
def test_a_bad_envelope_is_a_400_naming_the_field(api, envelope, field):
    before = row_counts()

    response = post_json(api, BATCH, json.dumps(envelope))

    assert field in assert_error(response, 400, "invalid")["fields"]
    assert row_counts() == before


def test_malformed_json_is_a_400(api):
    response = post_json(api, BATCH, '{"items": [NaN]}')

    assert_error(response, 400, "malformed_json")


def test_a_body_over_1_mib_is_a_json_413(api):
    before = row_counts()
    items = [create_body(context={"blob": "x" * (MIB // 4)}) for _ in range(5)]

    response = post_batch(api, items)

    assert_error(response, 413, "body_too_large")
    assert row_counts() == before


def test_no_key_is_a_401(api):
    before = row_counts()

    response = post_json(Client(), BATCH, {"items": [create_body()]})

    assert_error(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"] == "Bearer"
    assert row_counts() == before


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_a_wrong_method_is_a_json_405(api, method):
    response = getattr(api, method)(BATCH)

    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST, OPTIONS"


def test_batch_is_not_taken_for_a_case_id(api):
    # escalations/<id> would answer a 404 for "batch"; the batch route comes first.
    response = api.get(BATCH)

    assert response.status_code == 405


def test_the_schema_documents_the_batch_with_its_item_and_result_shapes(api):
    schema = api.get("/api/v1/schema", {"format": "json"}).json()

    operation = schema["paths"][BATCH]["post"]
    assert {"200", "400", "401", "413", "429"} <= set(operation["responses"])
    components = schema["components"]["schemas"]
    items = components["BatchInputRequest"]["properties"]["items"]
    assert (items["minItems"], items["maxItems"]) == (1, 100)
    create_ref = items["items"]["allOf"][0]["$ref"]
    assert create_ref.rsplit("/", 1)[1] in components
    assert set(components["BatchResult"]["properties"]) == {
        "status",
        "replayed",
        "retry_after",
        "body",
    }
