"""The manager console's rollups (escalation.rollups): percentiles read off the duration
histograms, the SQL buckets, the fold (first run, touched days only, self-healing, transfers,
idempotent, one fold at a time), and the calibration cells kept in the resolve transaction."""

from __future__ import annotations

import importlib
import io
import math
import random
import threading
from datetime import UTC, timedelta

import pytest
from django.apps import apps
from django.db import connection, transaction
from django.utils import timezone

from escalation import rollups, tasks, transitions
from escalation.audit import Actor
from escalation.models import (
    CalibrationCell,
    CaseDayStat,
    DurationDayStat,
    ResolutionDayStat,
    SweepCursor,
)
from escalation.models.stats import Metric
from tests.factories import make_case

pytestmark = pytest.mark.django_db

FRACTIONS = (0.5, 0.9, 0.99)
BUCKET_RATIO = 2 ** (1 / rollups.BUCKETS_PER_DOUBLING)


def percentile_cont(values, p):
    """PostgreSQL's definition, on the exact values."""
    ordered = sorted(values)
    h = p * (len(ordered) - 1)
    lo = math.floor(h)
    if h == lo:
        return ordered[lo]
    return ordered[lo] + (h - lo) * (ordered[lo + 1] - ordered[lo])


def histogram(values):
    """(bucket, count, smallest, largest) per bucket, as the fold stores them."""
    buckets: dict[int, list[float]] = {}
    for v in values:
        buckets.setdefault(rollups.bucket_of(v), []).append(v)
    return [(b, len(vs), min(vs), max(vs)) for b, vs in buckets.items()]


# --- percentiles from histograms (pure) -----------------------------------------------------


def test_percentiles_are_exact_when_no_bucket_holds_more_than_two_values():
    # Claims of the SLA page's hand set: 60, 60, 120, 180, 240, 1200 s (h = 2.5, 4.5, 4.95).
    values = [60, 60, 120, 180, 240, 1200]
    assert rollups.percentiles(histogram(values), FRACTIONS) == pytest.approx([150, 720, 1152])
    assert rollups.percentiles(histogram([61.0, 62.0]), (0.5,)) == pytest.approx([61.5])


def test_percentiles_of_nothing_one_value_and_equal_values():
    assert rollups.percentiles([], FRACTIONS) == [None, None, None]
    assert rollups.percentiles([(5, 0, 1.0, 1.0)], FRACTIONS) == [None, None, None]
    assert rollups.percentiles(histogram([90.0]), FRACTIONS) == [90.0, 90.0, 90.0]
    assert rollups.percentiles(histogram([42.0] * 1000), FRACTIONS) == [42.0] * 3


@pytest.mark.parametrize("seed", range(5))
def test_percentiles_lie_within_one_bucket_of_percentile_cont(seed):
    rng = random.Random(seed)
    values = [rng.lognormvariate(6, 1.5) for _ in range(5000)]  # median ~7 min, long tail
    estimated = rollups.percentiles(histogram(values), FRACTIONS)
    for p, estimate in zip(FRACTIONS, estimated, strict=True):
        exact = percentile_cont(values, p)
        assert exact / BUCKET_RATIO <= estimate <= exact * BUCKET_RATIO, (p, exact, estimate)


def test_bucket_of_spans_a_factor_of_two_in_eight_buckets():
    assert rollups.bucket_of(0.0) == rollups.bucket_of(0.999) == -1
    assert rollups.bucket_of(1.0) == 0
    assert rollups.bucket_of(2.0) == 8
    assert rollups.bucket_of(3600.0) == math.floor(8 * math.log2(3600))
    assert rollups.bucket_of(1.09) == 0 and rollups.bucket_of(1.1) == 1


# --- the fold on real cases -------------------------------------------------------------------


@pytest.fixture
def noon():
    return (timezone.now() - timedelta(days=1)).replace(hour=12, minute=0, second=0, microsecond=0)


def claim_after(case, actor, seconds, start):
    return transitions.claim(actor=actor, case_id=case.pk, now=start + timedelta(seconds=seconds))


def test_the_database_buckets_durations_as_bucket_of(agent, refunds, as_alice, noon):
    waits = [0.5, 1.5, 45.0, 61.0, 3600.0, 7 * 3600.0]  # each in a bucket of its own
    for seconds in waits:
        claim_after(make_case(agent=agent, queue=refunds, now=noon), as_alice, seconds, noon)
    rollups.refresh()
    stored = DurationDayStat.objects.filter(metric=Metric.CLAIM)
    assert sorted(stored.values_list("bucket", "min_s")) == [
        (rollups.bucket_of(s), pytest.approx(s, abs=1e-3)) for s in waits
    ]
    assert set(stored.values_list("day", flat=True)) == {noon.date()}
    assert set(stored.values_list("priority", flat=True)) == {"normal"}


def case_rows(**filters):
    return sorted(
        CaseDayStat.objects.filter(**filters).values_list(
            "day", "queue__slug", "priority", "band", "cases", "breached", "claimed", "resolved"
        )
    )


def test_the_first_fold_builds_everything_and_says_as_of(agent, refunds, support, noon):
    assert rollups.as_of() is None
    make_case(agent=agent, queue=refunds, confidence=0.42, now=noon)
    make_case(agent=agent, queue=support, confidence=0.95, now=noon - timedelta(days=10))
    assert rollups.refresh() > 0
    assert case_rows() == [
        ((noon - timedelta(days=10)).date(), "support", "normal", 9, 1, 0, 0, 0),
        (noon.date(), "refunds", "normal", 4, 1, 0, 0, 0),
    ]
    assert rollups.as_of() is not None
    assert rollups.refresh() == 0  # nothing new


def test_a_fold_rebuilds_only_the_days_its_events_touched(agent, refunds, as_alice, noon):
    old = make_case(agent=agent, queue=refunds, now=noon - timedelta(days=10))
    new = make_case(agent=agent, queue=refunds, now=noon)
    rollups.refresh()
    old_day = (noon - timedelta(days=10)).date()
    CaseDayStat.objects.filter(day=old_day).update(cases=999)  # a stale row, to be seen
    claim_after(new, as_alice, 60, noon)
    assert rollups.refresh() == 1  # the claim event
    assert case_rows(day=old_day)[0][4] == 999  # not touched, not rebuilt
    assert case_rows(day=noon.date())[0][6] == 1  # claimed
    transitions.append_context(
        actor=Actor.for_agent(agent), case_id=old.pk, note="more", data={}, now=noon
    )
    rollups.refresh()
    assert case_rows(day=old_day)[0][4] == 1  # rebuilt from the cases: healed


def test_a_transfer_moves_the_case_to_its_new_queue(agent, refunds, support, as_alice, noon):
    case = make_case(agent=agent, queue=refunds, now=noon)
    rollups.refresh()
    assert [r[1] for r in case_rows()] == ["refunds"]
    transitions.transfer(actor=as_alice, case_id=case.pk, to_queue=support, now=noon)
    rollups.refresh()
    assert [r[1] for r in case_rows()] == ["support"]


def all_rows():
    return (
        case_rows(),
        sorted(ResolutionDayStat.objects.values_list("day", "reviewer_id", "decision", "resolved")),
        sorted(DurationDayStat.objects.values_list("metric", "day", "bucket", "n", "min_s")),
    )


def resolved_case(agent, queue, actor, *, decision, confidence, start, version=""):
    case = make_case(
        agent=agent, queue=queue, confidence=confidence, agent_version=version, now=start
    )
    claimed = claim_after(case, actor, 30, start)
    return transitions.resolve(
        actor=actor,
        case_id=case.pk,
        claim_token=claimed.claim_token,
        decision=decision,
        final_action={"type": "refund", "amount": 1} if decision == "modify" else None,
        now=start + timedelta(seconds=600),
    )


def test_folding_twice_or_rebuilding_gives_the_same_rows(agent, refunds, as_alice, noon):
    for i, decision in enumerate(("approve", "modify", "reject")):
        resolved_case(agent, refunds, as_alice, decision=decision, confidence=0.3 * i, start=noon)
    rollups.refresh()
    folded = all_rows()
    assert folded[1] and folded[2]
    SweepCursor.objects.filter(name=rollups.CURSOR).update(position=0)  # fold it all again
    rollups.refresh()
    assert all_rows() == folded
    rollups.rebuild()
    assert all_rows() == folded


def test_a_fold_far_behind_rebuilds_everything(monkeypatch, agent, refunds, noon):
    make_case(agent=agent, queue=refunds, now=noon)
    rollups.refresh()
    calls = []
    monkeypatch.setattr(rollups, "rebuild_days", lambda: calls.append(1))
    monkeypatch.setattr(rollups, "REBUILD_AFTER_EVENTS", 0)
    make_case(agent=agent, queue=refunds, now=noon)  # an event behind: more than 0
    rollups.refresh()
    assert calls == [1]


def test_the_task_folds(agent, refunds, noon):
    make_case(agent=agent, queue=refunds, now=noon)
    assert tasks.refresh_stats() > 0
    assert case_rows()[0][4] == 1


@pytest.mark.django_db(transaction=True)
def test_a_second_fold_skips_while_one_holds_the_cursor(agent, refunds):
    make_case(agent=agent, queue=refunds)
    rollups.refresh()
    make_case(agent=agent, queue=refunds)
    holding, done = threading.Event(), threading.Event()

    def hold():
        try:
            with transaction.atomic():
                SweepCursor.objects.select_for_update().get(name=rollups.CURSOR)
                holding.set()
                done.wait(10)
        finally:
            connection.close()

    other = threading.Thread(target=hold)
    other.start()
    try:
        assert holding.wait(10)
        assert rollups.refresh() == 0  # skipped, not blocked
    finally:
        done.set()
        other.join(10)
    assert rollups.refresh() > 0
    assert case_rows()[0][4] == 2


# --- calibration cells --------------------------------------------------------------------------


def cells():
    return sorted(
        CalibrationCell.objects.values_list(
            "agent_id", "agent_version", "queue_id", "g", "n", "approved", "modified", "rejected"
        )
    ), sorted(
        CalibrationCell.objects.values_list("g", "sum_c", "sum_c2", "sum_c_approved", "min_c")
    )


def test_cells_kept_by_resolve_equal_a_recount(agent, other_agent, refunds, support, as_alice):
    rng = random.Random(7)
    start = timezone.now() - timedelta(hours=2)
    for i in range(40):
        resolved_case(
            rng.choice((agent, other_agent)),
            rng.choice((refunds, support)),
            as_alice,
            decision=rng.choice(("approve", "approve", "modify", "reject")),
            confidence=round(rng.random(), 3) if i % 5 else 1.0,
            start=start,
            version=rng.choice(("", "v2")),
        )
    make_case(agent=agent, queue=refunds, confidence=0.5)  # open: not a cell
    kept_counts, kept_sums = cells()
    assert sum(row[4] for row in kept_counts) == 40
    rollups.rebuild_calibration()
    recount_counts, recount_sums = cells()
    assert kept_counts == recount_counts
    for kept, recounted in zip(kept_sums, recount_sums, strict=True):
        assert kept == pytest.approx(recounted, abs=1e-9)


def test_the_migration_counts_the_resolutions_made_before_it(agent, refunds, as_alice):
    start = timezone.now() - timedelta(hours=1)
    resolved_case(agent, refunds, as_alice, decision="approve", confidence=0.91, start=start)
    resolved_case(agent, refunds, as_alice, decision="reject", confidence=0.915, start=start)
    kept = cells()
    CalibrationCell.objects.all().delete()
    migration = importlib.import_module("escalation.migrations.0012_learning_loop")
    migration.build_calibration_cells(apps, None)
    assert cells() == kept
    assert kept[0] == [(agent.pk, "", refunds.pk, 91, 2, 1, 0, 1)]


def test_day_bounds_are_utc_midnights(noon):
    start, end = rollups.day_bounds(noon.date())
    assert start.tzinfo == UTC and start.hour == 0 and end - start == timedelta(days=1)


def test_the_refresh_stats_command_folds_and_rebuilds(agent, refunds, as_alice, noon):
    from django.core.management import call_command

    resolved_case(agent, refunds, as_alice, decision="approve", confidence=0.5, start=noon)
    out = io.StringIO()
    call_command("refresh_stats", stdout=out)
    assert "statistics folded:" in out.getvalue() and case_rows()[0][4] == 1
    CalibrationCell.objects.update(n=99)
    CaseDayStat.objects.update(cases=99)
    out = io.StringIO()
    call_command("refresh_stats", "--rebuild", stdout=out)
    assert "calibration cells recounted: 1" in out.getvalue()
    assert CalibrationCell.objects.get().n == 1 and case_rows()[0][4] == 1
