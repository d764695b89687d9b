"""The reviewer inbox: what it lists, in which order, filters, counts, pages and live polling."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from escalation import transitions
from tests.factories import make_case
from tests.web.helpers import hx, next_page_link, poll_version, row_ids, rows_by_id, text

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


@pytest.fixture
def now():
    return timezone.now()


def test_the_inbox_lists_only_open_and_claimed_cases_of_my_queues(
    client, alice, agent, as_agent, as_alice, refunds, support, compliance
):
    open_case = make_case(agent=agent, queue=refunds, summary="open in refunds")
    claimed = make_case(agent=agent, queue=support, summary="claimed in support")
    transitions.claim(actor=as_alice, case_id=claimed.pk)
    resolved = make_case(agent=agent, queue=refunds, summary="resolved one")
    held = transitions.claim(actor=as_alice, case_id=resolved.pk)
    transitions.resolve(
        actor=as_alice, case_id=resolved.pk, claim_token=held.claim_token, decision="reject"
    )
    cancelled = make_case(agent=agent, queue=refunds, summary="cancelled one")
    transitions.cancel(actor=as_agent, case_id=cancelled.pk)
    legal = make_case(agent=agent, queue=compliance, summary="legal team case")
    client.force_login(alice)

    response = client.get("/inbox/")

    assert response.status_code == 200
    assert set(row_ids(response)) == {str(open_case.pk), str(claimed.pk)}
    page = text(response)
    for hidden in (resolved, cancelled, legal):
        assert hidden.summary not in page


def test_the_inbox_orders_by_next_due_time_then_priority(client, alice, agent, refunds, now):
    breached = make_case(agent=agent, queue=refunds, summary="breached", now=now - 2 * HOUR)
    low = make_case(agent=agent, queue=refunds, summary="low", priority="low", now=now)
    normal = make_case(agent=agent, queue=refunds, summary="normal", now=now)
    # urgent (claim in 5 min) and high posted 10 min earlier (claim in 15 min) fall due together:
    # the tie goes to the higher priority.
    high = make_case(
        agent=agent, queue=refunds, summary="high", priority="high", now=now - 10 * MINUTE
    )
    urgent = make_case(agent=agent, queue=refunds, summary="urgent", priority="urgent", now=now)
    assert high.next_due_at == urgent.next_due_at
    client.force_login(alice)

    response = client.get("/inbox/")

    assert response.status_code == 200
    assert row_ids(response) == [str(c.pk) for c in (breached, urgent, high, normal, low)]


@pytest.fixture
def assorted(agent, other_agent, as_alice, as_bob, refunds, support, now):
    """One case per filter to pick out, all in ops queues."""
    cases = {
        "breached": make_case(
            agent=agent, queue=refunds, summary="Breached refund", now=now - 2 * HOUR
        ),
        "at_risk": make_case(
            agent=agent, queue=refunds, summary="At-risk refund", now=now - 50 * MINUTE
        ),
        "urgent": make_case(
            agent=agent, queue=refunds, summary="Urgent chargeback", priority="urgent"
        ),
        "support": make_case(agent=agent, queue=support, summary="Password reset help"),
        "other_agent": make_case(agent=other_agent, queue=refunds, summary="From the other bot"),
        "mine": make_case(agent=agent, queue=refunds, summary="Claimed by alice"),
        "bobs": make_case(agent=agent, queue=refunds, summary="Claimed by bob"),
        "external": make_case(
            agent=agent, queue=refunds, summary="Ordinary question", external_id="ticket-4711"
        ),
    }
    transitions.claim(actor=as_alice, case_id=cases["mine"].pk)
    transitions.claim(actor=as_bob, case_id=cases["bobs"].pk)
    return cases


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("queue=support", {"support"}),
        ("priority=urgent", {"urgent"}),
        ("status=claimed", {"mine", "bobs"}),
        ("agent=other-bot", {"other_agent"}),
        ("sla=breached", {"breached"}),
        ("sla=at_risk", {"at_risk"}),
        ("mine=1", {"mine"}),
        ("q=CHARGEBACK", {"urgent"}),
        ("q=ticket-4711", {"external"}),
        ("q=ticket-47", set()),
        ("queue=refunds&status=claimed&agent=refund-bot", {"mine", "bobs"}),
    ],
)
def test_each_inbox_filter_narrows_the_list(client, alice, assorted, query, expected):
    client.force_login(alice)

    response = client.get(f"/inbox/?{query}")

    assert response.status_code == 200
    assert set(row_ids(response)) == {str(assorted[name].pk) for name in expected}


def test_the_filter_form_shows_each_requests_own_values(client, alice, case):
    # The form's HTML is cached per set of filter values (web.views._filter_form_html).
    client.force_login(alice)
    urgent = client.get("/inbox/?priority=urgent&after=").content.decode()
    low = client.get("/inbox/?priority=low").content.decode()
    again = client.get("/inbox/?priority=urgent").content.decode()

    assert '<option value="urgent" selected>' in urgent
    assert '<option value="low" selected>' in low and '"urgent" selected' not in low
    assert '<option value="urgent" selected>' in again
    bad = client.get("/inbox/?q=" + "x" * 201).content.decode()
    assert "Ensure this value has at most 200 characters" in bad


def test_the_status_filter_open_leaves_out_claimed_cases(client, alice, assorted):
    client.force_login(alice)

    response = client.get("/inbox/?status=open")

    shown = set(row_ids(response))
    assert str(assorted["mine"].pk) not in shown and str(assorted["bobs"].pk) not in shown
    assert str(assorted["urgent"].pk) in shown


def test_the_inbox_counts_open_claimed_and_breached_per_queue(
    client, alice, assorted, compliance_case
):
    client.force_login(alice)

    response = client.get("/inbox/")

    assert response.status_code == 200
    counts = {row["slug"]: row for row in response.context["counts"]}
    assert set(counts) == {"refunds", "support"}  # compliance belongs to team legal
    assert (counts["refunds"]["open"], counts["refunds"]["claimed"]) == (5, 2)
    assert counts["refunds"]["breached"] == 1
    assert (counts["support"]["open"], counts["support"]["claimed"]) == (1, 0)
    assert counts["support"]["breached"] == 0
    page = text(response)
    assert '<a href="?queue=refunds">Refunds</a>' in page
    assert '<span class="count" title="open">5</span>' in page
    assert '<span class="count claimed" title="claimed">2</span>' in page
    assert '<span class="count breached" title="breached">1</span>' in page


def test_queue_counts_past_the_cap_read_as_the_cap_plus(
    client, alice, agent, refunds, support, monkeypatch
):
    from escalation import queries

    monkeypatch.setattr(queries, "COUNT_CAP", 3)
    for i in range(5):
        make_case(agent=agent, queue=refunds, summary=f"deep {i}")
    make_case(agent=agent, queue=support, summary="shallow")
    client.force_login(alice)

    response = client.get("/inbox/")

    assert response.status_code == 200
    counts = {row["slug"]: row for row in response.context["counts"]}
    assert counts["refunds"]["open"] == 4  # counting stops one past the cap
    assert counts["support"]["open"] == 1
    page = text(response)
    assert '<span class="count" title="open">3+</span>' in page
    assert '<span class="count" title="open">1</span>' in page


def test_the_inbox_shows_sla_and_status_words(client, alice, assorted):
    client.force_login(alice)

    response = client.get("/inbox/")

    rows = rows_by_id(response)
    assert "Breached" in rows[str(assorted["breached"].pk)]
    assert "At risk" in rows[str(assorted["at_risk"].pk)]
    calm = rows[str(assorted["support"].pk)]
    assert "Breached" not in calm and "At risk" not in calm
    assert "Open" in calm
    assert "Claimed" in rows[str(assorted["mine"].pk)]
    assert "by alice" in rows[str(assorted["mine"].pk)]
    assert "by bob" in rows[str(assorted["bobs"].pk)]


@pytest.fixture
def many_cases(agent, refunds, now):
    """55 cases, one minute apart, so the urgency order is their age."""
    cases = [
        make_case(agent=agent, queue=refunds, summary=f"case {i:02d}", now=now - (60 - i) * MINUTE)
        for i in range(55)
    ]
    return [str(c.pk) for c in cases]


def test_the_inbox_pages_by_keyset_without_duplicates(client, alice, many_cases):
    client.force_login(alice)

    first = client.get("/inbox/")

    assert first.status_code == 200
    assert row_ids(first) == many_cases[:50]
    link = next_page_link(first)
    assert link is not None and "after=" in link
    second = client.get(link)
    assert second.status_code == 200
    assert row_ids(second) == many_cases[50:]
    assert next_page_link(second) is None
    assert "First page" in text(second)


def test_a_later_page_keeps_the_filters(client, alice, many_cases, agent, support):
    make_case(agent=agent, queue=support, summary="support case")
    client.force_login(alice)

    first = client.get("/inbox/?queue=refunds")
    second = client.get(next_page_link(first))

    assert "queue=refunds" in next_page_link(first)
    assert row_ids(second) == many_cases[50:]


def test_pages_merge_my_queues_in_one_order_even_through_ties(
    client, alice, agent, refunds, support, compliance, now
):
    """Each queue is read on its own and merged: the pages still follow one urgency order
    across queues, with ties on due time, priority and age broken by id, and no case twice."""
    from escalation.models import Escalation

    queues = (refunds, support)
    cases = [
        make_case(agent=agent, queue=queues[i % 2], summary=f"case {i:03d}", now=now)
        for i in range(120)
    ]
    for i in range(10):  # another team's cases, due first: never on my pages
        make_case(agent=agent, queue=compliance, summary=f"legal {i}", now=now - 2 * HOUR)
    due, created = now + HOUR, now - MINUTE
    # Cases 30..89 fall due together, across the first page's end; 40..69 share an age too.
    Escalation.objects.filter(pk__in=[c.pk for c in cases[30:90]]).update(
        next_due_at=due, priority_rank=2
    )
    Escalation.objects.filter(pk__in=[c.pk for c in cases[40:70]]).update(created_at=created)
    expected = [
        str(pk)
        for pk in Escalation.objects.filter(queue__in=queues)
        .order_by("next_due_at", "priority_rank", "created_at", "id")
        .values_list("pk", flat=True)
    ]
    client.force_login(alice)

    seen, url = [], "/inbox/"
    while url:
        response = client.get(url)
        assert response.status_code == 200
        seen += row_ids(response)
        url = next_page_link(response)

    assert seen == expected
    assert len(set(seen)) == 120


def _cursor(values) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "%%%",
        _cursor({"a": 1}),
        _cursor(["2025-01-01T00:00:00+00:00", "x", "2025-01-01T00:00:00+00:00", "id"]),
        # well-formed base64 JSON, but the values are not a time and a case id
        _cursor(["2025-01-01T00:00:00+00:00", 2, "yesterday", "not-a-uuid"]),
        _cursor(["2025-01-01T00:00:00+00:00", 2, "2025-01-01T00:00:00+00:00", "not-a-uuid"]),
    ],
    ids=["text", "not-base64", "an-object", "bad-rank", "bad-time-and-id", "bad-case-id"],
)
def test_a_mangled_cursor_starts_from_the_top(client, alice, many_cases, cursor):
    client.force_login(alice)

    response = client.get(f"/inbox/?after={cursor}")

    assert response.status_code == 200
    assert row_ids(response) == many_cases[:50]


def test_the_inbox_varies_on_hx_request(client, alice, case):
    client.force_login(alice)

    response = client.get("/inbox/")

    assert response.status_code == 200
    assert "HX-Request" in response["Vary"]


def test_the_htmx_poll_gets_the_list_fragment_then_204_until_something_changes(
    client, alice, agent, refunds, now
):
    make_case(agent=agent, queue=refunds, summary="the first case", now=now - MINUTE)
    client.force_login(alice)
    with time_machine.travel(now, tick=False) as traveller:
        page = client.get("/inbox/")
        version = poll_version(page)

        fragment = client.get("/inbox/", headers=hx("case-list"))
        assert fragment.status_code == 200
        assert "<html" not in text(fragment) and 'id="case-list"' in text(fragment)
        assert "the first case" in text(fragment)
        assert "HX-Request" in fragment["Vary"]

        unchanged = client.get(f"/inbox/?since={version}", headers=hx("case-list"))
        assert unchanged.status_code == 204
        assert "HX-Request" in unchanged["Vary"]

        traveller.shift(timedelta(seconds=1))
        make_case(agent=agent, queue=refunds, summary="a case that just arrived")
        changed = client.get(f"/inbox/?since={version}", headers=hx("case-list"))
        assert changed.status_code == 200
        assert "a case that just arrived" in text(changed)
        assert "<html" not in text(changed)
        assert poll_version(changed) != version


def test_the_poll_token_keeps_the_filters(client, alice, case):
    client.force_login(alice)

    page = client.get("/inbox/?queue=refunds&priority=normal")

    assert 'hx-get="/inbox/?queue=refunds&amp;priority=normal&amp;since=' in text(page)


def test_a_plain_request_with_a_since_token_gets_the_whole_page(client, alice, case):
    client.force_login(alice)
    version = poll_version(client.get("/inbox/"))

    response = client.get(f"/inbox/?since={version}")

    assert response.status_code == 200
    assert "<html" in text(response)


def test_the_inbox_offers_next_case(client, alice, case):
    client.force_login(alice)

    response = client.get("/inbox/")

    assert 'action="/inbox/next/"' in text(response)
    assert ">Next case</button>" in text(response)
