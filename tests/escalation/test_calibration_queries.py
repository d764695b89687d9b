"""Calibration from SQL aggregates: queries.calibration_counts (one GROUP BY over the grid
points) fed to calibration.summarize_grid gives the same report as calibration.as_json on the
same outcomes, one per case."""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from escalation import calibration as cal
from escalation import queries
from escalation.calibration import Outcome
from escalation.models import Escalation, Resolution, Status
from tests.api.helpers import resolve_case
from tests.factories import make_case

ALPHA = 0.02
DELTA = 0.05
# as_json rounds to 6 places; the SQL sums run in another order, so a value may land on the
# other side of a rounding boundary: at most one unit in the sixth place.
PLACES_TOLERANCE = 1.000001e-6
BUDGETS = [(ALPHA, DELTA), (0.05, 0.1), (0.1, 0.01), (0.5, 0.5)]


def approve(confidence: float, count: int = 1) -> list[Outcome]:
    return [Outcome(confidence, "approve")] * count


def error(confidence: float, count: int = 1, decision: str = "reject") -> list[Outcome]:
    return [Outcome(confidence, decision)] * count


def bulk_resolved(agent, queue, reviewer, outcomes: list[Outcome]) -> None:
    """Resolved cases with their resolutions, written in two bulk inserts (no audit trail:
    only the aggregates are under test here)."""
    now = timezone.now()
    cases = [
        Escalation(
            agent=agent,
            queue=queue,
            summary=f"case {i}",
            confidence=o.confidence,
            status=Status.RESOLVED,
            created_at=now,
            updated_at=now,
            entered_queue_at=now,
            expires_at=now + timedelta(days=1),
            closed_at=now,
        )
        for i, o in enumerate(outcomes)
    ]
    Escalation.objects.bulk_create(cases, batch_size=2000)
    Resolution.objects.bulk_create(
        [
            Resolution(escalation=case, decision=o.decision, resolved_by=reviewer, resolved_at=now)
            for case, o in zip(cases, outcomes, strict=True)
        ],
        batch_size=2000,
    )


def via_sql(agent, alpha: float = ALPHA, delta: float = DELTA) -> dict:
    return cal.summarize_grid(
        queries.calibration_counts(Escalation.objects.filter(agent=agent)), alpha, delta
    )


def assert_same(got, expected, path: str = "report") -> None:
    """Equal structure; ints, bools, strings and None exactly; floats to 6 decimals."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys(), path
        for key in expected:
            assert_same(got[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), path
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_same(g, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert isinstance(got, float), (path, got, expected)
        assert abs(got - expected) <= PLACES_TOLERANCE, (path, got, expected)
    else:
        assert type(got) is type(expected) and got == expected, (path, got, expected)


def assert_sql_matches(agent, outcomes: list[Outcome], budgets=BUDGETS) -> dict:
    for alpha, delta in budgets:
        assert_same(via_sql(agent, alpha, delta), cal.as_json(outcomes, alpha, delta))
    return via_sql(agent)


def random_outcomes(rng: random.Random, size: int, shape: str) -> list[Outcome]:
    def decision(error_rate: float) -> str:
        if rng.random() >= error_rate:
            return "approve"
        return rng.choice(["modify", "reject"])

    if shape == "uniform":
        return [Outcome(rng.random(), decision(0.15)) for _ in range(size)]
    if shape == "two_places":  # every value sits on a grid point, many on band edges
        return [Outcome(rng.randint(0, 100) / 100, decision(0.1)) for _ in range(size)]
    if shape == "confident":  # mostly clean near the top: certifies somewhere
        return [
            Outcome(min(1.0, 0.8 + rng.random() * 0.21), decision(0.004)) for _ in range(size)
        ] + [Outcome(rng.random() * 0.8, decision(0.3)) for _ in range(size // 5)]
    if shape == "calibrated":  # error rate 1 - confidence
        out = []
        for _ in range(size):
            c = rng.random()
            out.append(Outcome(c, "approve" if rng.random() < c else "modify"))
        return out
    raise AssertionError(shape)


# --- the aggregates --------------------------------------------------------------------------


@pytest.mark.django_db
def test_one_group_by_query_with_at_most_101_rows(
    agent, refunds, alice, django_assert_num_queries
) -> None:
    rng = random.Random(7)
    outcomes = [Outcome(j / 100, rng.choice(cal.DECISIONS)) for j in range(101)] * 3
    outcomes += random_outcomes(rng, 300, "uniform")
    bulk_resolved(agent, refunds, alice, outcomes)

    with django_assert_num_queries(1):
        rows = queries.calibration_counts(Escalation.objects.filter(agent=agent))

    assert len(rows) == 101
    assert [row["g"] for row in rows] == list(range(101))
    expected = cal.grid_rows(outcomes)
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected, strict=True):
        assert set(got) == set(cal.GRID_ROW_FIELDS)
        for name in ("g", "n", "errors", "approved", "modified", "rejected"):
            assert got[name] == want[name], (got["g"], name)
        for name in ("sum_c", "sum_c2", "sum_c_approved"):
            assert got[name] == pytest.approx(want[name], rel=1e-12, abs=1e-12)
        assert got["min_c"] == want["min_c"]


@pytest.mark.django_db
def test_the_grid_point_formula_in_sql_is_grid_index(agent, refunds, alice) -> None:
    # Float representations just below a grid point (0.57 * 100 = 56.999...), exact band
    # edges, and a value inside the EPS tolerance (selected at t = 0.93, as certify does).
    values = [0.0, 0.07, 0.1, 0.29, 0.5, 0.57, 0.58, 0.93 - 5e-10, 0.9, 0.99, 0.999999, 1.0]
    outcomes = [Outcome(c, "approve") for c in values]
    bulk_resolved(agent, refunds, alice, outcomes)

    rows = queries.calibration_counts(Escalation.objects.filter(agent=agent))

    by_g = {row["g"]: row["n"] for row in rows}
    assert by_g == Counter(cal.grid_index(c) for c in values)
    assert (by_g[57], by_g[93], by_g[99], by_g[100], by_g[10]) == (1, 1, 2, 1, 1)
    assert 92 not in by_g


@pytest.mark.django_db
def test_only_resolved_cases_with_a_resolution_count(agent, refunds, alice, as_agent) -> None:
    from escalation import transitions

    make_case(agent=agent, queue=refunds, confidence=0.9)  # open
    cancelled = make_case(agent=agent, queue=refunds, confidence=0.9)
    transitions.cancel(actor=as_agent, case_id=cancelled.pk, reason="not needed")
    resolve_case(make_case(agent=agent, queue=refunds, confidence=0.8), alice)

    rows = queries.calibration_counts(Escalation.objects.filter(agent=agent))

    assert [(row["g"], row["n"], row["approved"]) for row in rows] == [(80, 1, 1)]


# --- SQL path == as_json ---------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("seed", "size", "shape"),
    [
        (1, 400, "uniform"),
        (2, 500, "two_places"),
        (3, 600, "confident"),
        (4, 300, "calibrated"),
        (5, 1500, "confident"),
        (6, 37, "two_places"),
    ],
)
def test_random_data_sets_match_as_json(agent, refunds, alice, seed, size, shape) -> None:
    outcomes = random_outcomes(random.Random(seed), size, shape)
    bulk_resolved(agent, refunds, alice, outcomes)

    report = assert_sql_matches(agent, outcomes)

    assert report["total"] == len(outcomes)


@pytest.mark.django_db
def test_cases_made_and_resolved_through_the_transitions_match_as_json(
    agent, refunds, support, alice
) -> None:
    rng = random.Random(11)
    outcomes = []
    for i in range(24):
        confidence = rng.choice([0.1, 0.5, 0.93, 1.0, round(rng.random(), 3)])
        decision = cal.DECISIONS[i % 3]
        case = make_case(agent=agent, queue=refunds if i % 2 else support, confidence=confidence)
        final_action = {"type": "refund", "amount": 10} if decision == "modify" else None
        resolve_case(case, alice, decision=decision, final_action=final_action)
        outcomes.append(Outcome(confidence, decision))

    report = assert_sql_matches(agent, outcomes)

    assert report["total"] == 24
    assert sum(b["modified"] for b in report["bands"]) == 8


@pytest.mark.django_db
def test_149_error_free_cases_certify_and_148_do_not(agent, other_agent, refunds, alice) -> None:
    bulk_resolved(agent, refunds, alice, approve(0.95, 149))
    bulk_resolved(other_agent, refunds, alice, approve(0.95, 148))

    at = assert_sql_matches(agent, approve(0.95, 149))["certificate"]
    below = assert_sql_matches(other_agent, approve(0.95, 148))["certificate"]

    assert at["certified"] is True
    assert (at["theta"], at["theta_grid"], at["threshold_t"]) == (0.95, 0.95, 0.0)
    assert (at["n"], at["k"], at["coverage"], at["n_min"]) == (149, 0, 1.0, 149)
    assert at["upper_bound"] == 0.019905
    assert below["certified"] is False
    assert below["theta"] is None
    assert (below["n"], below["k"], below["needed_error_free"]) == (148, 0, 1)
    assert below["upper_bound"] == 0.020038
    assert below["best"]["t"] == 0.95


@pytest.mark.django_db
def test_one_error_235_vs_236(agent, other_agent, refunds, alice) -> None:
    below = approve(0.9, 234) + error(0.9)
    at = approve(0.9, 235) + error(0.9, decision="modify")
    bulk_resolved(agent, refunds, alice, below)
    bulk_resolved(other_agent, refunds, alice, at)

    not_yet = assert_sql_matches(agent, below, [(ALPHA, DELTA)])["certificate"]
    certified = assert_sql_matches(other_agent, at, [(ALPHA, DELTA)])["certificate"]

    assert not_yet["certified"] is False
    assert (not_yet["p_value"], not_yet["needed_error_free"]) == (0.050263, 1)
    assert not_yet["stopped_at"]["t"] == 0.9
    assert certified["certified"] is True
    assert (certified["n"], certified["k"], certified["p_value"]) == (236, 1, 0.049431)


@pytest.mark.django_db
def test_single_band_093_with_100_clean_cases_needs_49_more(agent, refunds, alice) -> None:
    outcomes = approve(0.93, 100)
    bulk_resolved(agent, refunds, alice, outcomes)

    cert = assert_sql_matches(agent, outcomes)["certificate"]

    assert cert["certified"] is False
    assert cert["needed_error_free"] == 49
    assert (cert["best"]["t"], cert["best"]["n"], cert["best"]["k"]) == (0.93, 100, 0)


@pytest.mark.django_db
def test_the_walk_stops_at_the_first_failure(agent, refunds, alice) -> None:
    outcomes = approve(0.99, 149) + error(0.98, 5) + approve(0.5, 2000)
    bulk_resolved(agent, refunds, alice, outcomes)

    cert = assert_sql_matches(agent, outcomes, [(ALPHA, DELTA)])["certificate"]

    assert cert["certified"] is True
    assert (cert["threshold_t"], cert["theta"], cert["n"], cert["k"]) == (0.99, 0.99, 149, 0)
    assert cert["stopped_at"]["t"] == 0.98
    assert (cert["stopped_at"]["n"], cert["stopped_at"]["k"]) == (154, 5)


@pytest.mark.django_db
def test_theta_is_the_lowest_selected_confidence(agent, refunds, alice) -> None:
    outcomes = approve(0.957, 200) + error(0.5, 50)
    bulk_resolved(agent, refunds, alice, outcomes)

    cert = assert_sql_matches(agent, outcomes)["certificate"]

    assert (cert["threshold_t"], cert["theta"], cert["theta_grid"]) == (0.51, 0.957, 0.95)


@pytest.mark.django_db
def test_empty(agent, refunds) -> None:
    assert queries.calibration_counts(Escalation.objects.filter(agent=agent)) == []

    report = assert_sql_matches(agent, [])

    assert report["total"] == 0 and report["ece"] is None and report["brier"] is None
    assert report["reliability"] == []
    assert report["certificate"]["needed_error_free"] == 149
    assert report["certificate"]["best"]["t"] == 1.0


@pytest.mark.django_db
def test_one_case(agent, refunds, alice) -> None:
    outcomes = [Outcome(0.8, "approve")]
    bulk_resolved(agent, refunds, alice, outcomes)

    report = assert_sql_matches(agent, outcomes)

    assert (report["ece"], report["brier"]) == (0.2, 0.04)
    assert report["certificate"]["needed_error_free"] == 148


@pytest.mark.django_db
def test_all_approved(agent, refunds, alice) -> None:
    outcomes = [Outcome(j / 500, "approve") for j in range(500)]
    bulk_resolved(agent, refunds, alice, outcomes)

    report = assert_sql_matches(agent, outcomes)

    cert = report["certificate"]
    assert cert["certified"] is True
    assert (cert["threshold_t"], cert["theta"], cert["coverage"]) == (0.0, 0.0, 1.0)
    assert all(b["error_rate"] == 0.0 for b in report["bands"])
    brier = sum((1 - j / 500) ** 2 for j in range(500)) / 500
    assert report["brier"] == pytest.approx(brier, abs=PLACES_TOLERANCE)


@pytest.mark.django_db
def test_band_edges(agent, refunds, alice) -> None:
    outcomes = [
        Outcome(0.1, "approve"),
        Outcome(0.5, "modify"),
        Outcome(1.0, "reject"),
        Outcome(0.0, "approve"),
        Outcome(0.9, "approve"),
        Outcome(0.0999, "approve"),
    ]
    bulk_resolved(agent, refunds, alice, outcomes)

    report = assert_sql_matches(agent, outcomes)

    counts = {b["band"]: b["n"] for b in report["bands"] if b["n"]}
    assert counts == {0: 2, 1: 1, 5: 1, 9: 2}
    assert report["bands"][9]["rejected"] == 1 and report["bands"][5]["modified"] == 1


# --- summarize_grid on its own (no database) -------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_summarize_grid_of_grid_rows_is_as_json(seed: int) -> None:
    rng = random.Random(seed)
    shape = ["uniform", "two_places", "confident", "calibrated"][seed % 4]
    outcomes = random_outcomes(rng, rng.randint(0, 900), shape)
    for alpha, delta in BUDGETS:
        assert_same(
            cal.summarize_grid(cal.grid_rows(outcomes), alpha, delta),
            cal.as_json(outcomes, alpha, delta),
        )


def test_summarize_grid_merges_repeated_grid_points_and_ignores_empty_rows() -> None:
    clean, dirty = approve(0.95, 3), error(0.951, 2, "modify")
    empty = {name: 0 for name in cal.GRID_ROW_FIELDS} | {"g": 12, "min_c": None}
    rows = cal.grid_rows(clean) + cal.grid_rows(dirty) + [empty]
    assert [row["g"] for row in rows] == [95, 95, 12]

    assert_same(cal.summarize_grid(rows), cal.as_json(clean + dirty))


@pytest.mark.parametrize(
    "change",
    [{"g": 101}, {"g": -1}, {"n": 4}, {"errors": 0}, {"approved": -1, "n": 0, "errors": 1}],
)
def test_summarize_grid_rejects_inconsistent_rows(change: dict) -> None:
    [row] = cal.grid_rows(approve(0.5, 2) + error(0.5))
    with pytest.raises(ValueError):
        cal.summarize_grid([{**row, **change}])


def test_summarize_grid_checks_alpha_and_delta() -> None:
    with pytest.raises(ValueError):
        cal.summarize_grid([], 0.0, DELTA)
    with pytest.raises(ValueError):
        cal.summarize_grid([], ALPHA, math.nan)


def test_grid_index_matches_band_index_and_the_threshold_test() -> None:
    for c in [0.0, 0.0999, 0.1, 0.57, 0.93 - 5e-10, 0.95, 0.99, 1.0] + [
        j / 100 for j in range(101)
    ]:
        g = cal.grid_index(c)
        assert 0 <= g <= 100
        assert cal.band_index(c) == min(9, g // 10)
        # The highest grid point t = j / 100 that certify's walk selects c at.
        assert g == max(j for j in range(101) if c >= j / 100 - cal.EPS)
