"""/manage/reviewers/, /manage/agents/ and /manage/agents/<name>/calibration: every figure against
a small hand-computed data set, the calibration JSON against calibration.as_json (including the
issue's vectors), permissions, and the SVG charts."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from django.utils import timezone

from accounts.models import Role
from escalation import calibration, rollups, stats_queries, transitions
from escalation.audit import Actor
from escalation.models import Delivery, DeliveryStatus, Escalation, Resolution, Status
from tests.factories import AgentFactory, UserFactory, add_member, make_case

pytestmark = pytest.mark.django_db

PAGES = ("/manage/reviewers/", "/manage/agents/", "/manage/agents/refund-bot/calibration")
REPORT_KEYS = ("total", "bands", "reliability", "ece", "brier", "certificate")


def decided(agent, queue, user, decision, *, at, minutes, confidence=0.5):
    """A case created and claimed at `at`, resolved `minutes` later with `decision`."""
    actor = Actor.for_user(user)
    case = make_case(agent=agent, queue=queue, confidence=confidence, now=at)
    claimed = transitions.claim(actor=actor, case_id=case.pk, now=at)
    transitions.resolve(
        actor=actor,
        case_id=case.pk,
        claim_token=claimed.claim_token,
        decision=decision,
        final_action={"type": "refund", "amount": 10} if decision == "modify" else None,
        now=at + timedelta(minutes=minutes),
    )
    return case


def bulk_resolved(agent, queue, reviewer, outcomes):
    """Resolved cases written directly (fast): one Escalation + Resolution per outcome."""
    now = timezone.now()
    cases = Escalation.objects.bulk_create(
        Escalation(
            agent=agent,
            queue=queue,
            summary="bulk",
            confidence=confidence,
            context={},
            status=Status.RESOLVED,
            created_at=now,
            updated_at=now,
            entered_queue_at=now,
            expires_at=now,
            closed_at=now,
            claimed_by=reviewer,
            claimed_at=now,
        )
        for confidence, _ in outcomes
    )
    Resolution.objects.bulk_create(
        Resolution(escalation=case, decision=decision, resolved_by=reviewer, resolved_at=now)
        for case, (_, decision) in zip(cases, outcomes, strict=True)
    )
    rollups.rebuild()  # rows written around the transitions: count them as an operator would


def assert_close(actual, expected, path="$"):
    """Equal structures, floats to 6 places."""
    if isinstance(expected, float) and isinstance(actual, int | float):
        assert actual == pytest.approx(expected, abs=1e-6), path
    elif isinstance(expected, dict):
        assert set(actual) == set(expected), path
        for key in expected:
            assert_close(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, f"{path}[{i}]")
    else:
        assert actual == expected, path


def svgs(page: str) -> list[str]:
    return re.findall(r"<svg.*?</svg>", page, flags=re.S)


@pytest.fixture
def lars(legal):
    """A manager of team legal only."""
    user = UserFactory(username="lars")
    add_member(user, legal, Role.MANAGER)
    return user


@pytest.fixture
def carl(ops):
    user = UserFactory(username="carl")
    add_member(user, ops, Role.REVIEWER)
    return user


@pytest.fixture
def day():
    """Two days ago at noon (UTC): inside every period."""
    return (timezone.now() - timedelta(days=2)).replace(hour=12, minute=0, second=0, microsecond=0)


@pytest.fixture
def dataset(agent, refunds, support, alice, bob, carl, day):
    """alice: 2, 4, 10 min (approve, approve, reject), median 4 min;
    bob: 3, 6 min (modify, approve), median 4.5 min; carl: one case of 7 min (reject).
    Confidences 0.05, 0.15, 0.95, 1.0, 0.93, 0.5 in that order; alice's on day - 1."""
    earlier = day - timedelta(days=1)
    decided(agent, refunds, alice, "approve", at=earlier, minutes=2, confidence=0.05)
    decided(agent, refunds, alice, "approve", at=earlier, minutes=10, confidence=0.15)
    decided(agent, support, alice, "reject", at=earlier, minutes=4, confidence=0.95)
    decided(agent, refunds, bob, "modify", at=day, minutes=3, confidence=1.0)
    decided(agent, refunds, bob, "approve", at=day, minutes=6, confidence=0.93)
    decided(agent, refunds, carl, "reject", at=day, minutes=7, confidence=0.5)
    rollups.refresh()  # as the periodic fold does


def by_name(rows):
    return {row["username"]: row for row in rows}


# --- permissions -------------------------------------------------------------------------


def test_reviewers_and_outsiders_get_403_everywhere(client, alice, outsider, case):
    for person in (alice, outsider):
        client.force_login(person)
        for url in PAGES:
            assert client.get(url).status_code == 403, url
        assert client.get(PAGES[2] + "?format=json").status_code == 403
        assert client.get(PAGES[2], HTTP_ACCEPT="application/json").status_code == 403


def test_pages_need_login_and_get(client, mona, case):
    for url in PAGES:
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    client.force_login(mona)
    for url in PAGES:
        assert client.post(url).status_code == 405, url


def test_every_page_renders_for_a_manager(client, mona, dataset):
    client.force_login(mona)
    for url in PAGES:
        response = client.get(url)
        assert response.status_code == 200, url
        page = response.content.decode()
        assert svgs(page), url
        for svg in svgs(page):
            assert "<script" not in svg.lower()


# --- reviewers -----------------------------------------------------------------------------


def test_reviewer_figures_match_the_hand_computed_set(mona, refunds, support, dataset):
    now = timezone.now()
    rows = by_name(
        stats_queries.reviewer_stats([refunds.pk, support.pk], now - timedelta(days=30), now)
    )
    assert list(rows) == ["alice", "bob", "carl"]  # busiest first
    alice, bob, carl = rows["alice"], rows["bob"], rows["carl"]
    assert alice["resolved"] == 3 and bob["resolved"] == 2 and carl["resolved"] == 1
    # Odd count: the middle one. Even: the mean of the two middle ones. One case: itself.
    assert alice["median_handling"] == timedelta(minutes=4)
    assert bob["median_handling"] == timedelta(minutes=4, seconds=30)
    assert carl["median_handling"] == timedelta(minutes=7)
    assert (alice["approved"], alice["modified"], alice["rejected"]) == (2, 0, 1)
    assert (bob["approved"], bob["modified"], bob["rejected"]) == (1, 1, 0)
    assert alice["agreement"] == pytest.approx(2 / 3)
    assert alice["rejected_share"] == pytest.approx(1 / 3)
    assert bob["agreement"] == pytest.approx(0.5) and bob["modified_share"] == pytest.approx(0.5)
    assert carl["agreement"] == 0.0 and carl["rejected_share"] == 1.0


def test_reviewer_page_shows_the_figures_and_filters_by_queue(client, mona, dataset):
    client.force_login(mona)
    page = client.get("/manage/reviewers/").content.decode()
    assert "4m 0s" in page and "4m 30s" in page and "7m 0s" in page
    assert "2 (66.7%)" in page and "1 (33.3%)" in page
    # Only refunds: alice's support case drops out, her median is of 2 and 10 minutes.
    rows = re.findall(r"<tr>\s*<td>(\w+)</td>\s*<td>(\d+)</td>\s*<td>([^<]*)</td>", page)
    assert ("alice", "3", "4m 0s") in rows
    page = client.get("/manage/reviewers/?queue=refunds").content.decode()
    rows = re.findall(r"<tr>\s*<td>(\w+)</td>\s*<td>(\d+)</td>\s*<td>([^<]*)</td>", page)
    assert ("alice", "2", "6m 0s") in rows


def test_no_resolutions_means_no_rows_and_the_period_counts(client, mona, agent, refunds, alice):
    client.force_login(mona)
    page = client.get("/manage/reviewers/").content.decode()
    assert "No cases resolved in this period." in page
    decided(agent, refunds, alice, "approve", at=timezone.now() - timedelta(days=40), minutes=5)
    rollups.refresh()
    assert "alice" not in client.get("/manage/reviewers/?days=30").content.decode()
    assert "5m 0s" in client.get("/manage/reviewers/?days=90").content.decode()
    now = timezone.now()
    assert stats_queries.reviewer_stats([refunds.pk], now - timedelta(days=7), now) == []


# --- agents --------------------------------------------------------------------------------


def test_agent_volume_and_histogram(mona, agent, refunds, support, dataset, day):
    now = timezone.now()
    ids = [refunds.pk, support.pk]
    since = now - timedelta(days=30)
    volume = stats_queries.volume_per_day(ids, since, now)
    assert volume == {agent.pk: {day.date() - timedelta(days=1): 3, day.date(): 3}}
    histogram = stats_queries.confidence_histogram(ids, since, now)
    # 0.05 -> band 0, 0.15 -> 1, 0.5 -> 5, 0.95, 1.0 and 0.93 -> band 9.
    assert histogram == {agent.pk: [1, 1, 0, 0, 0, 1, 0, 0, 0, 3]}
    assert stats_queries.confidence_histogram([refunds.pk], since, now)[agent.pk][9] == 2


def test_agent_page_shows_volume_histogram_and_dead_deliveries(client, mona, agent, dataset):
    case = Escalation.objects.filter(agent=agent).first()
    Delivery.objects.create(
        webhook_id="msg_dead_1",
        escalation=case,
        agent=agent,
        event_type="escalation.resolved",
        url="https://agent.example.com/hook",
        body="{}",
        status=DeliveryStatus.DEAD,
        dead_at=timezone.now(),
    )
    client.force_login(mona)
    page = client.get("/manage/agents/").content.decode()
    assert "refund-bot" in page
    assert "6 cases in the last 30 days" in page
    assert '<a href="/manage/deliveries/">1 dead webhook delivery</a>' in page
    assert "<td>0.9–1.0</td><td>3</td>" in page and "<td>0.5–0.6</td><td>1</td>" in page
    assert "Escalated cases are the ones the agent chose to send" in page
    assert "not certified" in page  # 6 cases are far below n_min = 149
    assert len(svgs(page)) == 2


def test_agent_names_are_escaped(client, mona, refunds):
    odd = AgentFactory(name='bot"<i>x</i>')
    make_case(agent=odd, queue=refunds)
    rollups.refresh()
    client.force_login(mona)
    page = client.get("/manage/agents/").content.decode()
    assert "<i>x</i>" not in page
    assert "bot&quot;&lt;i&gt;x&lt;/i&gt;" in page
    for svg in svgs(page):
        assert "<i>" not in svg and "<script" not in svg


# --- calibration ---------------------------------------------------------------------------


def calibration_json(client, name="refund-bot", **params):
    query = "&".join(f"{k}={v}" for k, v in {"format": "json", **params}.items())
    return client.get(f"/manage/agents/{name}/calibration?{query}")


def test_calibration_json_equals_as_json_on_the_same_outcomes(
    client, mona, agent, refunds, support, alice
):
    outcomes = [
        (0.05, "reject"),
        (0.15, "approve"),
        (0.42, "modify"),
        (0.5, "approve"),
        (0.93, "approve"),
        (0.93, "reject"),
        (0.95, "approve"),
        (1.0, "approve"),
    ]
    bulk_resolved(agent, refunds, alice, outcomes)
    bulk_resolved(agent, support, alice, [(0.7, "modify")])
    client.force_login(mona)
    body = calibration_json(client, queue="refunds").json()
    assert body["agent"] == "refund-bot" and body["queue"] == "refunds"
    assert body["alpha"] == 0.02 and body["delta"] == 0.05
    assert "chose to send" in body["note"]
    assert_close({k: body[k] for k in REPORT_KEYS}, calibration.as_json(outcomes))
    both = calibration_json(client, alpha="0.1", delta="0.2").json()
    expected = calibration.as_json([*outcomes, (0.7, "modify")], 0.1, 0.2)
    assert_close({k: both[k] for k in REPORT_KEYS}, expected)
    assert both["total"] == 9


def test_149_approved_at_095_certify(client, mona, agent, refunds, alice):
    outcomes = [(0.95, "approve")] * 149
    bulk_resolved(agent, refunds, alice, outcomes)
    client.force_login(mona)
    body = client.get(
        "/manage/agents/refund-bot/calibration", HTTP_ACCEPT="application/json"
    ).json()
    assert_close({k: body[k] for k in REPORT_KEYS}, calibration.as_json(outcomes))
    cert = body["certificate"]
    assert cert["certified"] is True and cert["theta"] == 0.95 and cert["n"] == 149
    assert cert["upper_bound"] == pytest.approx(0.019905, abs=1e-6)
    page = client.get("/manage/agents/refund-bot/calibration").content.decode()
    assert "Certified: auto-handle confidence ≥ <strong>0.95</strong>" in page


def test_148_approved_are_not_certified_and_need_one_more(client, mona, agent, refunds, alice):
    outcomes = [(0.95, "approve")] * 148
    bulk_resolved(agent, refunds, alice, outcomes)
    client.force_login(mona)
    body = calibration_json(client).json()
    assert_close({k: body[k] for k in REPORT_KEYS}, calibration.as_json(outcomes))
    cert = body["certificate"]
    assert cert["certified"] is False and cert["needed_error_free"] == 1
    assert cert["upper_bound"] == pytest.approx(0.020038, abs=1e-6)
    page = client.get("/manage/agents/refund-bot/calibration").content.decode()
    assert "<strong>not certified</strong>" in page
    assert "Needs <strong>1</strong> more error-free cases" in page
    assert "Escalated cases are the ones the agent chose to send" in page


def test_single_band_093_needs_49_more(client, mona, agent, refunds, alice):
    bulk_resolved(agent, refunds, alice, [(0.93, "approve")] * 100)
    client.force_login(mona)
    cert = calibration_json(client).json()["certificate"]
    assert cert["certified"] is False and cert["needed_error_free"] == 49


def test_calibration_page_shows_the_band_table_and_reliability(client, mona, agent, refunds, alice):
    bulk_resolved(agent, refunds, alice, [(0.95, "approve"), (0.91, "reject"), (0.15, "modify")])
    client.force_login(mona)
    response = client.get("/manage/agents/refund-bot/calibration?alpha=0.1&delta=0.1")
    assert response.status_code == 200
    page = response.content.decode()
    assert "<td>0.9–1.0</td><td>2</td><td>1 (50.0%)</td><td>0 (0.0%)</td><td>1 (50.0%)</td>" in page
    assert "<td>0.1–0.2</td><td>1</td><td>0 (0.0%)</td><td>1 (100.0%)</td>" in page
    (svg,) = svgs(page)
    assert svg.count("<circle") == 2 and 'stroke-dasharray="4 3"' in svg  # the diagonal
    report = calibration.as_json([(0.95, "approve"), (0.91, "reject"), (0.15, "modify")])
    assert f"ECE {report['ece']:.4f}" in page and f"Brier {report['brier']:.4f}" in page


def test_bad_alpha_or_delta_is_a_400(client, mona, agent, refunds, alice):
    bulk_resolved(agent, refunds, alice, [(0.95, "approve")])
    client.force_login(mona)
    for params in ({"alpha": "0.7"}, {"alpha": "abc"}, {"delta": "0"}, {"delta": "nan"}):
        response = calibration_json(client, **params)
        assert response.status_code == 400, params
        assert response.json()["error"]["code"] == "invalid"
        assert set(response.json()["error"]["fields"]) == set(params)
    response = client.get("/manage/agents/refund-bot/calibration?alpha=2")
    assert response.status_code == 400 and "field-error" in response.content.decode()
    assert client.get("/manage/agents/?delta=x").status_code == 400


def test_unknown_agent_or_no_cases_in_my_queues_is_a_404(
    client, mona, agent, other_agent, compliance, alice
):
    make_case(agent=other_agent, queue=compliance)
    client.force_login(mona)
    assert calibration_json(client, name="nobody").status_code == 404
    assert calibration_json(client, name="other-bot").status_code == 404
    assert client.get("/manage/agents/other-bot/calibration").status_code == 404


def test_a_manager_of_another_team_sees_none_of_the_ops_figures(client, lars, dataset):
    client.force_login(lars)
    reviewers = client.get("/manage/reviewers/").content.decode()
    assert "alice" not in reviewers and "No cases resolved" in reviewers
    agents = client.get("/manage/agents/").content.decode()
    assert "refund-bot" not in agents
    assert calibration_json(client).status_code == 404
    assert "refund-bot" not in client.get("/manage/agents/?queue=refunds").content.decode()


def test_days_axis_covers_the_period(client, mona, dataset):
    client.force_login(mona)
    page = client.get("/manage/agents/?days=7").content.decode()
    volume_svg = svgs(page)[0]
    assert volume_svg.count("<rect") == 7  # the 7 UTC days ending today
    today = timezone.now().date()
    assert f"<title>{today:%m-%d}: 0</title>" in volume_svg
    assert f"<title>{(today - timedelta(days=2)):%m-%d}: 3</title>" in volume_svg
    assert isinstance(today, date)


def test_calibration_filters_by_label_source_and_version(client, mona, agent, refunds, alice):
    from escalation.models import CalibrationCell

    def cell(source, version, n, approved):
        CalibrationCell.objects.create(
            agent=agent,
            agent_version=version,
            queue=refunds,
            source=source,
            g=90,
            n=n,
            approved=approved,
            rejected=n - approved,
            sum_c=0.9 * n,
            sum_c2=0.81 * n,
            sum_c_approved=0.9 * approved,
            min_c=0.9,
        )

    make_case(agent=agent, queue=refunds)  # the agent has a case in mona's queues
    cell("escalated", "v1", 10, 5)
    cell("assisted", "v1", 20, 20)
    cell("qa", "v2", 4, 3)
    client.force_login(mona)
    queries = (
        {},
        {"source": "unbiased"},
        {"source": "escalated"},
        {"source": "qa"},
        {"version": "v1"},
        {"source": "unbiased", "version": "v1"},
    )
    totals = [calibration_json(client, **query).json()["total"] for query in queries]
    assert totals == [34, 24, 10, 4, 30, 20]
    answer = calibration_json(client, source="assisted", version="v1").json()
    assert answer["source"] == "assisted" and answer["agent_version"] == "v1"
    bad = calibration_json(client, source="guess")
    assert bad.status_code == 400 and "source" in bad.json()["error"]["fields"]
    page = client.get("/manage/agents/refund-bot/calibration?source=unbiased").content.decode()
    assert "unbiased: shadow, assisted and QA" in page and ">v2</option>" in page
