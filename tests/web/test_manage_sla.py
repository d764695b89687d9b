"""/manage/sla/: breached and at-risk cases now, and over the period the breach rate and the
p50 / p90 / p99 time to claim and to resolve per queue, priority and reviewer, each against a
small hand-computed data set (percentile_cont's definition: for n sorted values and fraction p,
h = p (n - 1), v[floor h] + (h - floor h) (v[floor h + 1] - v[floor h])); permissions; the
first claim kept through release; the migration's backfill. The figures come from the rollups,
so each read first runs the fold the beat would (escalation.rollups.refresh)."""

from __future__ import annotations

import importlib
import re
from datetime import timedelta

import pytest
from django.apps import apps
from django.utils import timezone

from accounts.models import Role
from escalation import rollups, stats_queries, sweeps, transitions
from escalation.audit import Actor
from escalation.models import Escalation
from tests.factories import UserFactory, add_member, make_case

pytestmark = pytest.mark.django_db

URL = "/manage/sla/"


@pytest.fixture
def lars(legal):
    """A manager of team legal only."""
    user = UserFactory(username="lars")
    add_member(user, legal, Role.MANAGER)
    return user


@pytest.fixture
def t0():
    """Two days ago at noon (UTC): inside every period."""
    return (timezone.now() - timedelta(days=2)).replace(hour=12, minute=0, second=0, microsecond=0)


def handled(agent, queue, user, *, at, claim_after, resolve_after, priority="normal"):
    """A case created at `at`, claimed `claim_after` s later, resolved (approved)
    `resolve_after` s after creation, both by `user`."""
    actor = Actor.for_user(user)
    case = make_case(agent=agent, queue=queue, priority=priority, now=at)
    claimed = transitions.claim(
        actor=actor, case_id=case.pk, now=at + timedelta(seconds=claim_after)
    )
    transitions.resolve(
        actor=actor,
        case_id=case.pk,
        claim_token=claimed.claim_token,
        decision="approve",
        now=at + timedelta(seconds=resolve_after),
    )
    return case


@pytest.fixture
def dataset(agent, refunds, support, alice, bob, t0):
    """refunds (normal unless said): c1 alice claims at 60 s, resolves at 600 s; c2 alice
    120 / 1200; c3 bob 180 / 1800; c4 (high) bob 240 / 2400; c7 never claimed, its claim target
    (1 h) missed. support (urgent, targets 5 min / 30 min): c6 bob 60 / 600; c5 claim target
    missed (swept at 10 min), claimed by alice at 1200 s, resolved at 3600 s (resolve target
    missed too). All created at t0; breached: c5 and c7. Leases of 2 h: nobody renews here."""
    for queue in (refunds, support):
        queue.lease_seconds = 7200
        queue.save()
    cases = {
        "c1": handled(agent, refunds, alice, at=t0, claim_after=60, resolve_after=600),
        "c2": handled(agent, refunds, alice, at=t0, claim_after=120, resolve_after=1200),
        "c3": handled(agent, refunds, bob, at=t0, claim_after=180, resolve_after=1800),
        "c4": handled(
            agent, refunds, bob, at=t0, claim_after=240, resolve_after=2400, priority="high"
        ),
        "c6": handled(
            agent, support, bob, at=t0, claim_after=60, resolve_after=600, priority="urgent"
        ),
        "c7": make_case(agent=agent, queue=refunds, summary="Never claimed", now=t0),
    }
    c5 = make_case(agent=agent, queue=support, priority="urgent", now=t0)
    assert sweeps.sweep_breaches(now=t0 + timedelta(minutes=10)) == 1  # c5's claim target
    claimed = transitions.claim(
        actor=Actor.for_user(alice), case_id=c5.pk, now=t0 + timedelta(seconds=1200)
    )
    transitions.resolve(
        actor=Actor.for_user(alice),
        case_id=c5.pk,
        claim_token=claimed.claim_token,
        decision="reject",
        now=t0 + timedelta(seconds=3600),
    )
    assert sweeps.sweep_breaches(now=t0 + timedelta(hours=2)) == 1  # c7's claim target
    cases["c5"] = c5
    rollups.refresh()  # as the periodic fold does
    return cases


def figures(queue_ids, days=30):
    rollups.refresh()
    until = timezone.now()
    since = until - timedelta(days=days - 1)
    found = stats_queries.sla_figures(queue_ids, since, until)
    return {
        "all": found["all"],
        **{
            dimension: {row["key"]: row for row in found[dimension]}
            for dimension in stats_queries.SLA_DIMENSIONS
        },
        "days": stats_queries.breach_rate_per_day(queue_ids, since, until),
    }


def check(row, cases, breached, claim, resolve):
    assert row["cases"] == cases
    assert row["breached"] == breached
    assert row["breach_rate"] == pytest.approx(breached / cases)
    if claim is None:
        assert row["claim"] is None
    else:
        assert row["claim"] == pytest.approx(claim, abs=1e-6)
    assert row["resolve"] == pytest.approx(resolve, abs=1e-6)


def expect_dataset(f, t0):
    """The hand-computed figures of `dataset`."""
    # Claims 60, 60, 120, 180, 240, 1200 s: h = 2.5, 4.5, 4.95.
    # Resolves 600, 600, 1200, 1800, 2400, 3600 s.
    check(f["all"], 7, 2, [150, 720, 1152], [1500, 3000, 3540])
    assert f["all"]["claimed"] == 6 and f["all"]["resolved"] == 6
    # refunds: claims 60, 120, 180, 240 (the example: h = 1.5, 2.7, 2.97).
    check(f["queue"]["refunds"], 5, 1, [150, 222, 238.2], [1500, 2220, 2382])
    # support: claims 60, 1200; resolves 600, 3600.
    check(f["queue"]["support"], 2, 1, [630, 1086, 1188.6], [2100, 3300, 3570])
    assert list(f["queue"]) == ["refunds", "support"]
    assert f["queue"]["refunds"]["label"] == "Refunds"
    # Per priority, urgent first: urgent = support; high = c4 alone; normal = c1, c2, c3, c7.
    assert list(f["priority"]) == ["urgent", "high", "normal"]
    check(f["priority"]["urgent"], 2, 1, [630, 1086, 1188.6], [2100, 3300, 3570])
    check(f["priority"]["high"], 1, 0, [240, 240, 240], [2400, 2400, 2400])
    check(f["priority"]["normal"], 4, 1, [120, 168, 178.8], [1200, 1680, 1788])
    # Per reviewer (who resolved): alice c1, c2, c5 (600, 1200, 3600); bob c3, c4, c6
    # (1800, 2400, 600). No time to claim.
    assert list(f["reviewer"]) == ["alice", "bob"]
    check(f["reviewer"]["alice"], 3, 1, None, [1200, 3120, 3552])
    check(f["reviewer"]["bob"], 3, 0, None, [1800, 2280, 2388])
    assert f["days"] == {t0.date(): {"cases": 7, "breached": 2, "breach_rate": 2 / 7}}


# --- permissions -----------------------------------------------------------------------------


def test_reviewers_and_outsiders_get_403(client, alice, outsider, case):
    for person in (alice, outsider):
        client.force_login(person)
        assert client.get(URL).status_code == 403


def test_needs_login_and_get(client, mona):
    response = client.get(URL)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    client.force_login(mona)
    assert client.post(URL).status_code == 405


def test_a_manager_of_another_team_sees_nothing_of_ops(client, lars, dataset):
    client.force_login(lars)
    for query in ("", "?queue=refunds", "?days=90"):
        response = client.get(URL + query)
        assert response.status_code == 200
        page = response.content.decode()
        assert "Never claimed" not in page and "Refunds" not in page
        assert response.context["breached_now"] == 0 and response.context["at_risk_now"] == 0
        assert response.context["overall"]["cases"] == 0
        assert "no cases" in page


# --- figures ---------------------------------------------------------------------------------


def test_figures_match_the_hand_computed_data_set(refunds, support, dataset, t0):
    expect_dataset(figures([refunds.pk, support.pk]), t0)


def test_the_period_counts_cases_created_in_it(agent, refunds, support, dataset, t0):
    old = timezone.now() - timedelta(days=40)
    make_case(agent=agent, queue=refunds, now=old)
    sweeps.sweep_breaches(now=old + timedelta(hours=2))  # claim breached
    assert figures([refunds.pk], days=30)["queue"]["refunds"]["cases"] == 5
    f = figures([refunds.pk], days=90)
    check(f["queue"]["refunds"], 6, 2, [150, 222, 238.2], [1500, 2220, 2382])
    assert f["days"][old.date()] == {"cases": 1, "breached": 1, "breach_rate": 1.0}
    assert figures([refunds.pk], days=7)["all"]["cases"] == 5


def test_empty_period(refunds):
    f = figures([refunds.pk])
    assert f["all"]["cases"] == 0 and f["all"]["breach_rate"] is None
    assert f["all"]["claim"] == [None] * 3 and f["all"]["resolve"] == [None] * 3
    assert f["queue"] == f["priority"] == f["reviewer"] == f["days"] == {}


def test_one_case(agent, refunds, alice, t0):
    handled(agent, refunds, alice, at=t0, claim_after=90, resolve_after=900)
    f = figures([refunds.pk])
    check(f["all"], 1, 0, [90, 90, 90], [900, 900, 900])
    check(f["reviewer"]["alice"], 1, 0, None, [900, 900, 900])


def test_open_cases_count_without_times(agent, refunds, t0):
    make_case(agent=agent, queue=refunds, now=t0)
    f = figures([refunds.pk])
    assert f["all"]["cases"] == 1 and f["all"]["claimed"] == 0 and f["all"]["resolved"] == 0
    assert f["all"]["claim"] == [None] * 3 and f["all"]["resolve"] == [None] * 3
    assert f["reviewer"] == {}


# --- first claim -----------------------------------------------------------------------------


def test_first_claimed_at_is_the_first_claim(agent, refunds, as_alice, as_bob, t0):
    case = make_case(agent=agent, queue=refunds, now=t0)
    assert case.first_claimed_at is None
    first = t0 + timedelta(minutes=3)
    taken = transitions.claim(actor=as_alice, case_id=case.pk, now=first)
    case.refresh_from_db()
    assert case.first_claimed_at == first == case.claimed_at
    transitions.release(
        actor=as_alice,
        case_id=case.pk,
        claim_token=taken.claim_token,
        now=t0 + timedelta(minutes=5),
    )
    second = t0 + timedelta(minutes=9)
    claimed = transitions.claim(actor=as_bob, case_id=case.pk, now=second)
    case.refresh_from_db()
    assert case.claimed_at == second and case.first_claimed_at == first
    transitions.resolve(
        actor=as_bob,
        case_id=case.pk,
        claim_token=claimed.claim_token,
        decision="approve",
        now=t0 + timedelta(minutes=20),
    )
    f = figures([refunds.pk])
    assert f["all"]["claim"] == pytest.approx([180] * 3)
    assert f["all"]["resolve"] == pytest.approx([1200] * 3)


def test_the_migration_backfills_the_first_claim(agent, refunds, as_alice, t0):
    claimed = make_case(agent=agent, queue=refunds, now=t0)
    released = make_case(agent=agent, queue=refunds, now=t0)
    never = make_case(agent=agent, queue=refunds, now=t0)
    transitions.claim(actor=as_alice, case_id=claimed.pk, now=t0 + timedelta(minutes=1))
    taken = transitions.claim(actor=as_alice, case_id=released.pk, now=t0 + timedelta(minutes=2))
    transitions.release(
        actor=as_alice,
        case_id=released.pk,
        claim_token=taken.claim_token,
        now=t0 + timedelta(minutes=3),
    )
    transitions.claim(actor=as_alice, case_id=released.pk, now=t0 + timedelta(minutes=4))
    Escalation.objects.update(first_claimed_at=None)
    migration = importlib.import_module("escalation.migrations.0009_first_claimed_at")
    migration.backfill(apps, None)
    got = dict(Escalation.objects.values_list("pk", "first_claimed_at"))
    assert got == {
        claimed.pk: t0 + timedelta(minutes=1),
        released.pk: t0 + timedelta(minutes=2),
        never.pk: None,
    }


# --- now -------------------------------------------------------------------------------------


def test_breached_and_at_risk_now(agent, refunds, compliance, as_alice):
    now = timezone.now()
    breached = make_case(
        agent=agent, queue=refunds, summary="Late one", now=now - timedelta(hours=2)
    )
    at_risk = make_case(
        agent=agent, queue=refunds, summary="Close one", now=now - timedelta(minutes=50)
    )
    make_case(agent=agent, queue=refunds, summary="Fresh one", now=now - timedelta(minutes=5))
    make_case(agent=agent, queue=compliance, summary="Not mine", now=now - timedelta(hours=2))
    # Claimed 20 min ago: the resolve clock (8 h) runs, neither late nor at risk.
    claimed = make_case(
        agent=agent, queue=refunds, summary="Claimed one", now=now - timedelta(hours=3)
    )
    transitions.claim(actor=as_alice, case_id=claimed.pk, now=now - timedelta(minutes=20))
    current = stats_queries.sla_now([refunds.pk], now)
    assert current["breached"] == 1 and current["at_risk"] == 1
    assert [c.pk for c in current["cases"]] == [breached.pk, at_risk.pk]
    assert [c.pk for c in stats_queries.sla_now([refunds.pk], now, limit=1)["cases"]] == [
        breached.pk
    ]


# --- the page --------------------------------------------------------------------------------


def svgs(page: str) -> list[str]:
    return re.findall(r"<svg.*?</svg>", page, flags=re.S)


def test_the_page_for_a_manager(client, mona, dataset):
    client.force_login(mona)
    response = client.get(URL)
    assert response.status_code == 200
    page = response.content.decode()
    ctx = response.context
    assert ctx["breached_now"] == 1 and ctx["at_risk_now"] == 0
    c7 = dataset["c7"]
    assert f'href="/cases/{c7.pk}/"' in page and "Never claimed" in page
    assert "Breached" in page
    assert ctx["overall"]["breach_pct"] == "28.6%"
    # refunds claim p50 / p90 / p99 = 150 / 222 / 238.2 s.
    assert ctx["overall"]["claim_text"] == ["2m 30s", "12m 0s", "19m 12s"]
    refunds = ctx["sections"][0]["rows"][0]
    assert refunds["label"] == "Refunds" and refunds["claim_text"] == ["2m 30s", "3m 42s", "3m 58s"]
    assert refunds["breach_pct"] == "20.0%"
    assert "2m 30s" in page and "3m 42s" in page and "20.0%" in page
    # Charts: per day, and per queue / priority (breach rate, claim, resolve), per reviewer
    # (breach rate, resolve).
    assert len(svgs(page)) == 1 + 3 + 3 + 2
    assert "Time to claim per queue (minutes)" in page
    assert "Refunds · p90: 3.7" in page  # 222 s in minutes
    assert "no cases" not in page


def test_the_queue_filter_and_an_unknown_queue(client, mona, dataset):
    client.force_login(mona)
    ctx = client.get(URL + "?queue=support&days=7").context
    assert ctx["overall"]["cases"] == 2 and ctx["breached_now"] == 0 and ctx["days"] == 7
    assert [r["key"] for r in ctx["sections"][0]["rows"]] == ["support"]
    response = client.get(URL + "?queue=compliance&days=12")
    assert response.context["overall"]["cases"] == 0 and response.context["days"] == 30
    assert "no cases" in response.content.decode()


def test_an_empty_period_says_no_cases(client, mona, refunds):
    client.force_login(mona)
    response = client.get(URL)
    page = response.content.decode()
    assert response.status_code == 200 and "no cases" in page
    assert "No breached or at-risk cases now." in page
    assert svgs(page) == []
