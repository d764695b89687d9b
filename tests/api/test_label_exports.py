"""GET /api/v1/labels?format=csv (and the period filter `until=`): the same streaming exporter as
the JSON Lines, row for row; CSV cells that would start a formula are neutralised."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient
from django.utils import timezone

from escalation import exports
from escalation.models import AgentKey, Escalation
from tests.api.helpers import API, assert_error, bearer, resolve_case
from tests.factories import make_case

pytestmark = pytest.mark.django_db

LABELS = f"{API}/labels"
SCHEMA = {
    "type": "object",
    "properties": {"outcome": {"type": "string", "enum": ["fraud", "goodwill", "policy"]}},
}


def body(response) -> str:
    assert response.status_code == 200, getattr(response, "content", b"")[:300]
    return b"".join(response.streaming_content).decode()


def read_csv(response) -> list[dict]:
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="labels.csv"' in response["Content-Disposition"]
    reader = csv.DictReader(io.StringIO(body(response), newline=""))
    assert tuple(reader.fieldnames) == exports.CSV_COLUMNS
    return list(reader)


def read_jsonl(response) -> list[dict]:
    return [json.loads(line) for line in body(response).splitlines()]


@pytest.fixture
def labelled(agent, refunds, support, alice, other_agent):
    """Four resolved cases of refund-bot (resolved in order 0..3, 10 minutes apart, not in
    creation order, with varied decisions), an open one, and another agent's resolved one."""
    refunds.label_schema = SCHEMA
    refunds.save()
    now = timezone.now()
    created = [
        make_case(
            agent=agent,
            queue=queue,
            now=now - timedelta(hours=5 - i),
            external_id=f"x-{i}",
            agent_version="v3",
            reason="policy",
            metadata={"tier": "gold", "n": i},
        )
        for i, queue in enumerate([refunds, support, refunds, support])
    ]
    order = [created[3], created[0], created[2], created[1]]
    decisions = [
        {"decision": "approve", "labels": {}},
        {
            "decision": "modify",
            "final_action": {"type": "refund", "amount": 100, "note": 'ünïcode, "quoted"'},
            "labels": {"outcome": "goodwill"},
        },
        {"decision": "reject", "labels": {"outcome": "fraud"}},
        {"decision": "approve", "labels": {}},
    ]
    for i, (case, decision) in enumerate(zip(order, decisions, strict=True)):
        resolve_case(
            case,
            alice,
            at=now - timedelta(minutes=40 - 10 * i),
            note=f"line one\nline two, {i}",
            **decision,
        )
    make_case(agent=agent, queue=refunds)
    resolve_case(make_case(agent=other_agent, queue=refunds, summary="other"), alice)
    return order, now


def test_csv_rows_are_the_json_lines_in_the_same_order(api, labelled):
    order, _ = labelled

    rows = read_csv(api.get(LABELS, {"format": "csv"}))
    lines = read_jsonl(api.get(LABELS, {"format": "jsonl"}))

    assert [row["id"] for row in rows] == [line["id"] for line in lines]
    assert [row["id"] for row in rows] == [str(c.pk) for c in order]
    for row, line in zip(rows, lines, strict=True):
        assert row["queue"] == line["queue"]
        assert row["agent"] == "refund-bot"
        assert row["decision"] == line["decision"]
        assert row["reviewer"] == line["reviewer"] == "alice"
        assert row["created_at"] == line["created_at"]
        assert row["resolved_at"] == line["resolved_at"]
        assert float(row["confidence"]) == line["agent"]["confidence"]
        assert row["agent_version"] == line["agent"]["agent_version"]
        assert json.loads(row["proposed_action"]) == line["agent"]["proposed_action"]
        assert json.loads(row["final_action"]) == line["final_action"]
        assert json.loads(row["labels"]) == line["labels"]
        assert json.loads(row["context"]) == line["input"]["context"]
        assert json.loads(row["metadata"]) == line["input"]["metadata"]
        assert row["note"] == line["note"]


def test_csv_matches_the_database(api, labelled):
    order, _ = labelled

    rows = read_csv(api.get(LABELS, {"format": "csv"}))

    for row, case in zip(rows, order, strict=True):
        case = Escalation.objects.select_related("resolution").get(pk=case.pk)
        resolution = case.resolution
        assert row["external_id"] == case.external_id
        assert row["summary"] == case.summary
        assert row["reason"] == case.reason
        assert row["decision"] == resolution.decision
        assert json.loads(row["labels"]) == resolution.labels
        assert json.loads(row["final_action"]) == resolution.final_action
        assert json.loads(row["metadata"]) == case.metadata
        assert row["note"] == resolution.note  # the newline survives the quoting
    assert [row["decision"] for row in rows] == ["approve", "modify", "reject", "approve"]
    assert rows[1]["labels"] == '{"outcome":"goodwill"}'  # canonical JSON
    assert rows[2]["final_action"] == "null"


def test_csv_honours_the_queue_filter(api, labelled):
    order, _ = labelled

    rows = read_csv(api.get(LABELS, {"format": "csv", "queue": "support"}))

    assert [row["id"] for row in rows] == [str(order[0].pk), str(order[3].pk)]
    assert {row["queue"] for row in rows} == {"support"}


def test_the_period_is_after_exclusive_until_inclusive(api, labelled):
    order, now = labelled
    resolved = [
        Escalation.objects.get(pk=c.pk).resolution.resolved_at for c in order
    ]  # now-40m, now-30m, now-20m, now-10m

    params = {"after": resolved[0].isoformat(), "until": resolved[2].isoformat()}
    rows = read_csv(api.get(LABELS, {"format": "csv", **params}))
    lines = read_jsonl(api.get(LABELS, {"format": "jsonl", **params}))
    page = api.get(LABELS, params).json()["results"]

    expected = [str(order[1].pk), str(order[2].pk)]
    assert [row["id"] for row in rows] == expected
    assert [line["id"] for line in lines] == expected
    assert [label["id"] for label in page] == expected


def test_until_alone_bounds_the_period_from_above(api, labelled):
    order, now = labelled

    rows = read_csv(
        api.get(LABELS, {"format": "csv", "until": (now - timedelta(minutes=25)).isoformat()})
    )

    assert [row["id"] for row in rows] == [str(order[0].pk), str(order[1].pk)]


@pytest.mark.parametrize("value", ["yesterday", "2026-02-30T00:00:00Z", "2026-01-31T12:00:00"])
def test_a_bad_until_is_refused(api, value):
    error = assert_error(api.get(LABELS, {"format": "csv", "until": value}), 400, "invalid")
    assert "until" in error["fields"]


def test_another_agents_labels_are_never_in_the_csv(api, other_api, labelled):
    rows = read_csv(api.get(LABELS, {"format": "csv"}))
    assert "other" not in {row["summary"] for row in rows}
    assert {row["agent"] for row in rows} == {"refund-bot"}

    theirs = read_csv(other_api.get(LABELS, {"format": "csv"}))
    assert [row["summary"] for row in theirs] == ["other"]
    assert {row["agent"] for row in theirs} == {"other-bot"}


def test_no_matching_labels_give_the_header_only(other_api, labelled):
    response = other_api.get(LABELS, {"format": "csv", "queue": "support"})

    assert body(response) == ",".join(exports.CSV_COLUMNS) + "\r\n"


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_cells_that_would_start_a_formula_are_neutralised(api, agent, refunds, alice, start):
    summary = f'{start}HYPERLINK("http://evil.example","x")'
    case = make_case(agent=agent, queue=refunds, summary=summary, external_id=f"{start}1+1")
    resolve_case(case, alice, note=f"{start}cmd|' /C calc'!A0")

    (row,) = read_csv(api.get(LABELS, {"format": "csv"}))
    (line,) = read_jsonl(api.get(LABELS, {"format": "jsonl"}))

    assert row["summary"] == "'" + summary
    assert row["note"] == "'" + f"{start}cmd|' /C calc'!A0"
    assert row["external_id"] == f"'{start}1+1"
    assert line["input"]["summary"] == summary  # JSON Lines carry the text untouched


def test_a_harmless_cell_is_left_alone(api, agent, refunds, alice):
    case = make_case(agent=agent, queue=refunds, summary="a = b + c - d @ e")
    resolve_case(case, alice, note="")

    (row,) = read_csv(api.get(LABELS, {"format": "csv"}))

    assert row["summary"] == "a = b + c - d @ e"
    assert row["note"] == ""


@pytest.mark.parametrize("fmt", ["xml", "CSV", "tsv", "jsonl "])
def test_a_bad_format_is_refused(api, fmt):
    error = assert_error(api.get(LABELS, {"format": fmt}), 400, "invalid")
    assert "format" in error["fields"]


def test_csv_streams_across_keyset_batches(api, agent, refunds, alice, monkeypatch):
    monkeypatch.setattr(exports, "BATCH", 2)
    now = timezone.now()
    cases = [make_case(agent=agent, queue=refunds) for _ in range(5)]
    for i, case in enumerate(cases):
        # two share a resolution time, so the keyset's id tiebreak is exercised
        resolve_case(case, alice, at=now - timedelta(minutes=10 - min(i, 3)))

    response = api.get(LABELS, {"format": "csv"})
    rows = read_csv(response)
    lines = read_jsonl(api.get(LABELS, {"format": "jsonl"}))

    assert len(rows) == 5 and len({row["id"] for row in rows}) == 5
    assert [row["id"] for row in rows] == [line["id"] for line in lines]
    assert {row["id"] for row in rows} == {str(c.pk) for c in cases}


def test_csv_streams_under_asgi_too(agent, labelled):
    # Production serves ASGI, where the stream is an async iterator.
    order, _ = labelled
    _, raw = AgentKey.generate(agent)

    async def fetch():
        # Per-request headers: AsyncClient's constructor headers never reach the ASGI scope.
        response = await AsyncClient().get(LABELS, {"format": "csv"}, headers=bearer(raw))
        if not response.streaming:
            return response.status_code, response["Content-Type"], False, response.content
        chunks = [chunk async for chunk in response.streaming_content]
        return response.status_code, response["Content-Type"], response.is_async, b"".join(chunks)

    status, content_type, is_async, content = async_to_sync(fetch)()

    assert status == 200, content[:300]
    assert content_type == "text/csv; charset=utf-8"
    assert is_async
    rows = list(csv.DictReader(io.StringIO(content.decode(), newline="")))
    assert [row["id"] for row in rows] == [str(c.pk) for c in order]
    assert [json.loads(row["labels"]) for row in rows] == [
        {},
        {"outcome": "goodwill"},
        {"outcome": "fraud"},
        {},
    ]
