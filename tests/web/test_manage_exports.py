"""/manage/exports/: a manager downloads the labels of the queues they manage as CSV or JSON
Lines, filtered by queue, agent and period; nobody else gets anything."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from accounts.models import Role
from escalation import exports
from escalation.models import Escalation
from tests.api.helpers import resolve_case
from tests.factories import UserFactory, add_member, make_case

pytestmark = pytest.mark.django_db

PAGE = "/manage/exports/"
CSV_URL = "/manage/exports/labels.csv"
JSONL_URL = "/manage/exports/labels.jsonl"
DAY = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def body(response) -> str:
    assert response.status_code == 200, getattr(response, "content", b"")[:300]
    return b"".join(response.streaming_content).decode()


def read_csv(response) -> list[dict]:
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    reader = csv.DictReader(io.StringIO(body(response), newline=""))
    assert tuple(reader.fieldnames) == exports.CSV_COLUMNS
    return list(reader)


def read_jsonl(response) -> list[dict]:
    assert response["Content-Type"] == "application/x-ndjson"
    return [json.loads(line) for line in body(response).splitlines()]


@pytest.fixture
def labelled(agent, other_agent, refunds, support, compliance, alice, legal):
    """Resolved cases, oldest resolution first: refund-bot in refunds on Jan 9, other-bot in
    support on Jan 10, refund-bot in support on Jan 11 (team ops); refund-bot in compliance on
    Jan 10 (team legal); plus an open ops case."""
    lawyer = UserFactory(username="lars")
    add_member(lawyer, legal, Role.REVIEWER)
    plan = [
        (agent, refunds, alice, DAY - timedelta(days=1), "reject", {}),
        (agent, compliance, lawyer, DAY - timedelta(hours=1), "approve", {}),
        (other_agent, support, alice, DAY, "modify", {"final_action": {"type": "credit"}}),
        (agent, support, alice, DAY + timedelta(days=1), "approve", {}),
    ]
    cases = {}
    for i, (who, queue, reviewer, at, decision, extra) in enumerate(plan):
        case = make_case(
            agent=who,
            queue=queue,
            now=at - timedelta(hours=2),
            summary=f"=case {i} in {queue.slug}",
            metadata={"i": i},
        )
        resolve_case(case, reviewer, at=at, decision=decision, note=f"note {i}", **extra)
        cases[i] = case
    make_case(agent=agent, queue=refunds)
    return cases


def ids(cases, *keys) -> list[str]:
    return [str(cases[k].pk) for k in keys]


# --- who may -----------------------------------------------------------------------------------


def test_anonymous_people_are_sent_to_sign_in(client):
    for url in (PAGE, CSV_URL, JSONL_URL):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_reviewers_and_outsiders_get_403(client, alice, outsider, labelled):
    for person in (alice, outsider):
        client.force_login(person)
        for url in (PAGE, CSV_URL, JSONL_URL):
            assert client.get(url).status_code == 403, (person, url)


def test_posting_is_not_allowed(client, mona):
    client.force_login(mona)
    for url in (PAGE, CSV_URL, JSONL_URL):
        assert client.post(url).status_code == 405


def test_an_unknown_format_is_not_a_page(client, mona):
    client.force_login(mona)
    assert client.get("/manage/exports/labels.xml").status_code == 404


# --- the page ----------------------------------------------------------------------------------


def test_the_page_offers_the_managers_queues_agents_and_both_formats(client, mona, labelled):
    client.force_login(mona)
    response = client.get(PAGE)

    assert response.status_code == 200
    page = response.content.decode()
    assert "Label exports" in page
    assert '<option value="refunds">' in page and '<option value="support">' in page
    assert '<option value="compliance">' not in page  # legal's queue
    assert '<option value="refund-bot">' in page and '<option value="other-bot">' in page
    assert 'name="from"' in page and 'name="to"' in page
    assert '<option value="csv"' in page and '<option value="jsonl"' in page
    assert 'href="/manage/exports/labels.csv"' in page
    assert 'href="/manage/exports/labels.jsonl"' in page


def test_submitting_the_form_goes_to_the_download(client, mona, labelled):
    client.force_login(mona)
    response = client.get(
        PAGE,
        {"queue": "support", "agent": "", "from": "2026-01-10", "to": "", "format": "jsonl"},
    )

    assert response.status_code == 302
    assert response["Location"] == f"{JSONL_URL}?queue=support&from=2026-01-10"


def test_the_page_shows_what_is_wrong_with_the_filters(client, mona, labelled):
    client.force_login(mona)
    response = client.get(PAGE, {"queue": "compliance", "from": "2026-01-12", "to": "2026-01-10"})

    assert response.status_code == 400
    page = response.content.decode()
    assert "Select a valid choice" in page
    assert "must not be before From" in page


# --- the download ------------------------------------------------------------------------------


def test_a_manager_gets_only_their_queues_labels_in_both_formats(client, mona, labelled):
    client.force_login(mona)

    rows = read_csv(client.get(CSV_URL))
    lines = read_jsonl(client.get(JSONL_URL))

    expected = ids(labelled, 0, 2, 3)  # not compliance's, not the open one
    assert [row["id"] for row in rows] == expected
    assert [line["id"] for line in lines] == expected
    for row, line in zip(rows, lines, strict=True):
        case = Escalation.objects.select_related("resolution", "agent").get(pk=row["id"])
        assert row["queue"] == line["queue"] == case.queue.slug
        assert row["agent"] == line["agent"]["name"] == case.agent.name
        assert row["decision"] == line["decision"] == case.resolution.decision
        assert row["note"] == line["note"] == case.resolution.note
        assert json.loads(row["final_action"]) == line["final_action"]
        assert json.loads(row["final_action"]) == case.resolution.final_action
        assert json.loads(row["labels"]) == line["labels"] == case.resolution.labels
        assert json.loads(row["metadata"]) == line["input"]["metadata"] == case.metadata
        assert row["summary"] == "'" + case.summary  # "=..." is neutralised in the CSV
        assert line["input"]["summary"] == case.summary
    assert [row["decision"] for row in rows] == ["reject", "modify", "approve"]


def test_the_download_is_an_attachment_named_after_the_filters(client, mona, labelled):
    client.force_login(mona)

    plain = client.get(CSV_URL)
    filtered = client.get(JSONL_URL, {"queue": "support", "from": "2026-01-10"})

    assert plain["Content-Disposition"] == 'attachment; filename="labels.csv"'
    assert (
        filtered["Content-Disposition"] == 'attachment; filename="labels-support-2026-01-10.jsonl"'
    )


def test_filters_by_queue_agent_and_period(client, mona, labelled):
    client.force_login(mona)

    def csv_ids(**params) -> list[str]:
        return [row["id"] for row in read_csv(client.get(CSV_URL, params))]

    def jsonl_ids(**params) -> list[str]:
        return [line["id"] for line in read_jsonl(client.get(JSONL_URL, params))]

    for fetch in (csv_ids, jsonl_ids):
        assert fetch(queue="support") == ids(labelled, 2, 3)
        assert fetch(agent="refund-bot") == ids(labelled, 0, 3)
        assert fetch(agent="other-bot") == ids(labelled, 2)
        assert fetch(**{"from": "2026-01-10"}) == ids(labelled, 2, 3)
        assert fetch(to="2026-01-10") == ids(labelled, 0, 2)  # the whole day, inclusive
        assert fetch(**{"from": "2026-01-10", "to": "2026-01-10"}) == ids(labelled, 2)
        assert fetch(queue="refunds", agent="other-bot") == []


def test_a_queue_the_manager_does_not_manage_is_refused(client, mona, labelled):
    client.force_login(mona)

    response = client.get(CSV_URL, {"queue": "compliance"})

    assert response.status_code == 400
    assert b"queue" in response.content


def test_bad_dates_are_refused(client, mona):
    client.force_login(mona)
    assert client.get(CSV_URL, {"from": "last week"}).status_code == 400
    assert client.get(CSV_URL, {"from": "2026-01-12", "to": "2026-01-10"}).status_code == 400


def test_a_manager_of_another_team_sees_only_theirs(client, legal, labelled):
    lawyer = UserFactory(username="lea")
    add_member(lawyer, legal, Role.MANAGER)
    client.force_login(lawyer)

    assert [row["id"] for row in read_csv(client.get(CSV_URL))] == ids(labelled, 1)
    assert client.get(CSV_URL, {"queue": "refunds"}).status_code == 400


def test_a_superuser_gets_every_queue(client, labelled):
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    client.force_login(admin)

    assert [row["id"] for row in read_csv(client.get(CSV_URL))] == ids(labelled, 0, 1, 2, 3)


def test_the_download_streams_under_asgi_too(mona, labelled):
    async def fetch(url: str):
        client = AsyncClient()
        await client.aforce_login(mona)
        response = await client.get(url, {"queue": "support"})
        if not response.streaming:
            return response.status_code, False, response.content
        chunks = [chunk async for chunk in response.streaming_content]
        return response.status_code, response.is_async, b"".join(chunks)

    for url in (CSV_URL, JSONL_URL):
        status, is_async, content = async_to_sync(fetch)(url)
        assert status == 200, content[:300]
        assert is_async
        text = content.decode()
        if url == CSV_URL:
            found = [row["id"] for row in csv.DictReader(io.StringIO(text, newline=""))]
        else:
            found = [json.loads(line)["id"] for line in text.splitlines()]
        assert found == ids(labelled, 2, 3)
