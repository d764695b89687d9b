"""Idempotency-Key on create: a replay answers 200 with the original body and no second case;
the same key with another body is a 422; only successes are stored; keys are per agent and
last 24 h; concurrent requests with one key never create two cases."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg.sql
import pytest
from django.db import connection
from django.test import Client

from escalation.models import AgentKey, Escalation, IdempotencyRecord
from tests.api.helpers import (
    ESCALATIONS,
    assert_error,
    bearer,
    client_for,
    create_body,
    post_json,
    row_counts,
)

pytestmark = pytest.mark.django_db


def create(client, body, key: str = "order-8812"):
    return post_json(client, ESCALATIONS, body, **{"Idempotency-Key": key})


def test_a_replay_answers_200_with_the_original_body_and_creates_nothing(api, agent):
    first = create(api, create_body())
    after_first = row_counts()

    replay = create(api, create_body())

    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first
    assert replay.status_code == 200
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert Escalation.objects.filter(agent=agent).count() == 1
    assert row_counts() == after_first


def test_the_same_key_with_a_different_body_is_a_422(api):
    first = create(api, create_body(summary="first"))
    after_first = row_counts()

    reused = create(api, create_body(summary="second"))

    assert first.status_code == 201
    assert_error(reused, 422, "idempotency_key_reused")
    assert row_counts() == after_first
    assert Escalation.objects.get().summary == "first"


def test_key_order_and_whitespace_do_not_make_a_different_body(api):
    first = create(
        api,
        '{"queue":"refunds","summary":"s","confidence":0.5,"context":{"a":1,"b":[1,2]}}',
    )

    replay = create(
        api,
        '{\n  "context": {"b": [1, 2], "a": 1},\n  "confidence": 0.5,\n'
        '  "summary": "s",   "queue": "refunds"\n}',
    )

    assert first.status_code == 201
    assert replay.status_code == 200
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]
    assert Escalation.objects.count() == 1


def test_a_key_of_255_characters_is_accepted(api):
    response = create(api, create_body(), key="k" * 255)

    assert response.status_code == 201
    assert IdempotencyRecord.objects.get().key == "k" * 255


def test_a_key_over_255_characters_is_a_400(api):
    before = row_counts()

    response = create(api, create_body(), key="k" * 256)

    error = assert_error(response, 400, "invalid")
    assert "Idempotency-Key" in error["fields"]
    assert row_counts() == before


def test_an_empty_key_is_a_400(api):
    before = row_counts()

    response = create(api, create_body(), key="")

    error = assert_error(response, 400, "invalid")
    assert "Idempotency-Key" in error["fields"]
    assert row_counts() == before


def test_a_replay_is_answered_even_once_the_agent_is_at_its_open_case_cap(api, agent):
    agent.max_open_cases = 1
    agent.save()
    first = create(api, create_body())

    replay = create(api, create_body())

    assert first.status_code == 201
    assert replay.status_code == 200
    assert replay.json()["id"] == first.json()["id"]
    assert Escalation.objects.count() == 1


def test_a_failed_attempt_is_not_stored_and_the_key_can_be_retried(api):
    failed = create(api, create_body(confidence=1.5))
    assert not IdempotencyRecord.objects.exists()

    retried = create(api, create_body())

    assert_error(failed, 400, "invalid")
    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried
    assert Escalation.objects.count() == 1


def test_a_refused_queue_is_not_stored_either(agent, refunds, support):
    agent.all_queues = False
    agent.save()
    agent.queues.set([support])
    client = client_for(agent)
    refused = create(client, create_body(queue="refunds"))

    retried = create(client, create_body(queue="support"))

    assert_error(refused, 403, "queue_not_allowed")
    assert retried.status_code == 201
    assert Escalation.objects.get().queue == support


def test_keys_belong_to_one_agent(api, other_api, agent, other_agent):
    mine = create(api, create_body())

    theirs = create(other_api, create_body())

    assert mine.status_code == 201
    assert theirs.status_code == 201
    assert theirs.json()["id"] != mine.json()["id"]
    assert Escalation.objects.filter(agent=agent).count() == 1
    assert Escalation.objects.filter(agent=other_agent).count() == 1


def test_a_key_is_forgotten_after_24_hours(api):
    first = create(api, create_body())
    record = IdempotencyRecord.objects.get()
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        created_at=record.created_at - timedelta(hours=25)
    )

    again = create(api, create_body(summary="a different body is fine now"))

    assert first.status_code == 201
    assert again.status_code == 201
    assert again.json()["id"] != first.json()["id"]
    assert Escalation.objects.count() == 2


def test_a_key_is_still_remembered_just_inside_24_hours(api):
    first = create(api, create_body())
    IdempotencyRecord.objects.update(
        created_at=IdempotencyRecord.objects.get().created_at - timedelta(hours=23)
    )

    replay = create(api, create_body())

    assert replay.status_code == 200
    assert replay.json()["id"] == first.json()["id"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_create_exactly_one_case(agent, refunds):
    _, raw = AgentKey.generate(agent)
    threads_count = 20  # issue 10: twenty creates with one key at once
    barrier = threading.Barrier(threads_count)
    results: list = [None] * threads_count

    def post(index: int) -> None:
        client = Client(headers=bearer(raw))
        try:
            barrier.wait(timeout=10)
            results[index] = create(client, create_body(), key="same-key-at-once")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert all(not thread.is_alive() for thread in threads)
    assert all(not isinstance(r, Exception) for r in results), results
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(201) == 1, statuses
    assert Escalation.objects.filter(agent=agent).count() == 1
    case_id = str(Escalation.objects.get().pk)
    created = next(r for r in results if r.status_code == 201)
    assert created.json()["id"] == case_id
    for response in results:
        if response.status_code == 409:
            assert_error(response, 409, "idempotency_key_in_use")
            assert response["Retry-After"] == "1"
        elif response.status_code == 200:
            assert response["Idempotent-Replayed"] == "true"
            assert response.json()["id"] == case_id
        else:
            assert response.status_code == 201, response.content
    assert IdempotencyRecord.objects.filter(agent=agent).count() == 1


def test_on_sqlite_a_key_in_flight_is_refused_by_its_file_lock(
    agent, settings, tmp_path, monkeypatch
):
    """The embedded default has no advisory locks: the per-key file lock gives the 409."""
    from escalation.api import idempotency
    from escalation.api.errors import ApiError

    settings.VAR_DIR = tmp_path
    monkeypatch.setattr(idempotency.connection, "vendor", "sqlite")
    with idempotency._file_lock(agent, "key-1"):
        with pytest.raises(ApiError) as err, idempotency._file_lock(agent, "key-1"):
            pass
        assert err.value.status_code == 409
        assert err.value.error_code == "idempotency_key_in_use"
        assert err.value.headers == {"Retry-After": "1"}
        with idempotency._file_lock(agent, "key-2"):  # another key is not held
            pass
    with idempotency._file_lock(agent, "key-1"):  # released after the first finished
        pass
    assert list(tmp_path.joinpath("idempotency-locks").iterdir()) == []


def test_the_key_read_keeps_to_the_agent_key_index_in_a_generic_plan(api):
    """The read of a create's key is a prepared statement, and PostgreSQL may settle on a
    generic plan made without its values (made once, while the table is small). That plan must
    still find (agent, key) through the unique index, not filter all of the agent's records."""
    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL plan")
    reads = []

    def capture(execute, sql, params, many, context):
        if sql.startswith("SELECT") and "escalation_idempotencyrecord" in sql:
            reads.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        assert create(api, create_body()).status_code == 201
    ((sql, params),) = reads
    for n in range(1, len(params) + 1):
        sql = sql.replace("%s", f"${n}", 1)
    with connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE key_read AS {sql}")
        try:
            # EXPLAIN takes no bound parameters: the values go in as literals.
            values = psycopg.sql.SQL(", ").join(map(psycopg.sql.Literal, params))
            cursor.execute(f"EXPLAIN EXECUTE key_read({values.as_string(connection.connection)})")
            plan = "\n".join(line for (line,) in cursor.fetchall())
        finally:
            cursor.execute("DEALLOCATE key_read")
            cursor.execute("RESET plan_cache_mode")

    assert "Index Cond: ((agent_id = $1) AND ((key)::text = $2))" in plan, plan
