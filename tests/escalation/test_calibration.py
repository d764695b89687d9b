from __future__ import annotations

import json
import math
import time
from fractions import Fraction

import pytest

from escalation import calibration as cal
from escalation.calibration import Outcome

ALPHA = 0.02
DELTA = 0.05


def approve(confidence: float, count: int = 1) -> list[Outcome]:
    return [Outcome(confidence, "approve")] * count


def error(confidence: float, count: int = 1, decision: str = "reject") -> list[Outcome]:
    return [Outcome(confidence, decision)] * count


def exact_cdf(k: int, n: int, p: float) -> Fraction:
    """P(Bin(n, p) <= k) in exact rational arithmetic (p taken as the exact float value)."""
    pf = Fraction(p)
    return sum(
        (Fraction(math.comb(n, j)) * pf**j * (1 - pf) ** (n - j) for j in range(0, k + 1)),
        Fraction(0),
    )


# --- hand-computed vectors (alpha = 2%, delta = 5%) ------------------------------------------


def test_n_min_vector() -> None:
    assert cal.n_min(ALPHA, DELTA) == 149


def test_k0_bound_vectors() -> None:
    assert round(cal.cp_upper(0, 148, DELTA), 6) == 0.020038
    assert round(cal.cp_upper(0, 149, DELTA), 6) == 0.019905
    # k = 0 closed form: 1 - delta^(1/n).
    assert cal.cp_upper(0, 148, DELTA) == pytest.approx(1 - DELTA ** (1 / 148), rel=1e-12)


def test_k1_pvalue_vectors() -> None:
    assert round(cal.binom_cdf(1, 235, ALPHA), 6) == 0.050263
    assert round(cal.binom_cdf(1, 236, ALPHA), 6) == 0.049431
    assert cal.cp_upper(1, 235, DELTA) > ALPHA
    assert cal.cp_upper(1, 236, DELTA) <= ALPHA


def test_certify_148_vs_149_error_free() -> None:
    below = cal.certify(approve(0.9, 148))
    assert not below.certified
    assert below.n == 148 and below.k == 0
    assert round(below.upper_bound, 6) == 0.020038
    assert below.needed_error_free == 1
    assert below.stopped_at is None  # nothing reached n_min, so nothing was tested

    at = cal.certify(approve(0.9, 149))
    assert at.certified
    assert at.n == 149 and at.k == 0
    assert round(at.upper_bound, 6) == 0.019905
    assert at.to_dict()["upper_bound"] == 0.019905


def test_certify_235_vs_236_with_one_error() -> None:
    below = cal.certify(approve(0.9, 234) + error(0.9))
    assert not below.certified
    assert (below.n, below.k) == (235, 1)
    assert round(below.p_value, 6) == 0.050263
    assert below.needed_error_free == 1
    assert below.stopped_at is not None and below.stopped_at["t"] == 0.9
    assert below.best is not None and below.best["t"] == 0.9

    at = cal.certify(approve(0.9, 235) + error(0.9, decision="modify"))
    assert at.certified
    assert (at.n, at.k) == (236, 1)
    assert round(at.p_value, 6) == 0.049431


def test_single_band_093_with_100_clean_cases_needs_49_more() -> None:
    cert = cal.certify(approve(0.93, 100))
    assert not cert.certified
    assert cert.theta is None and cert.threshold_t is None
    assert cert.needed_error_free == 49
    assert cert.best is not None
    assert cert.best["t"] == 0.93  # the highest grid point selecting those 100 cases
    assert cert.best["n"] == 100 and cert.best["k"] == 0
    assert cert.best["needed_error_free"] == 49
    assert cal.certify(approve(0.93, 149)).certified


# --- the walk ------------------------------------------------------------------------------


def test_stops_at_first_failure_even_if_a_lower_threshold_would_certify() -> None:
    outcomes = approve(0.99, 149) + error(0.98, 5) + approve(0.5, 10_000)
    # On its own, t = 0.50 (n = 10154, k = 5) would pass: using it would be a multiple-testing
    # error after t = 0.98 failed.
    assert cal.binom_cdf(5, 10_154, ALPHA) <= DELTA
    cert = cal.certify(outcomes)
    assert cert.certified
    assert cert.threshold_t == 0.99
    assert cert.theta == 0.99
    assert (cert.n, cert.k, cert.total) == (149, 0, 10_154)
    assert cert.coverage == pytest.approx(149 / 10_154)
    assert cert.stopped_at is not None
    assert cert.stopped_at["t"] == 0.98
    assert (cert.stopped_at["n"], cert.stopped_at["k"]) == (154, 5)


def test_first_tested_threshold_failing_means_not_certified() -> None:
    # The top cases are dirty: t = 0.99 is tested first and fails; the clean mass below is
    # never reached.
    outcomes = approve(0.99, 150) + error(0.99, 10) + approve(0.5, 10_000)
    cert = cal.certify(outcomes)
    assert not cert.certified
    assert cert.best is not None and cert.stopped_at is not None
    assert cert.best["t"] == cert.stopped_at["t"] == 0.99
    assert (cert.n, cert.k) == (160, 10)
    needed = cert.needed_error_free
    assert needed is not None and needed > 0
    # Exactly the smallest number of extra clean cases that makes that threshold pass.
    assert cal.binom_cdf(10, 160 + needed, ALPHA) <= DELTA
    assert cal.binom_cdf(10, 160 + needed - 1, ALPHA) > DELTA


def test_theta_is_lowest_selected_confidence_and_grid_point() -> None:
    outcomes = approve(0.957, 200) + error(0.5, 50)
    cert = cal.certify(outcomes)
    assert cert.certified
    # t = 0.95 .. 0.51 all select the same 200 cases; t = 0.50 adds the errors and fails.
    assert cert.threshold_t == 0.51
    assert cert.theta == 0.957
    assert cert.theta_grid == 0.95
    assert (cert.n, cert.k) == (200, 0)
    assert cert.coverage == pytest.approx(0.8)
    assert cert.stopped_at is not None and cert.stopped_at["t"] == 0.5


def test_threshold_tolerance_selects_float_grid_values() -> None:
    # 0.57 * 100 == 56.99999999999999: still selected at t = 0.57.
    assert 0.57 * 100 < 57
    cert = cal.certify(approve(0.57, 149) + error(0.2, 40))
    assert cert.certified
    assert cert.theta == 0.57
    assert cert.theta_grid == 0.57
    assert cert.threshold_t == 0.21


def test_untested_best_prefers_the_threshold_closest_to_certifying() -> None:
    # Nothing reaches n_min. All 140 cases (t <= 0.50) carry 20 errors; the 100 at 0.95 are
    # clean and need only 49 more.
    cert = cal.certify(approve(0.95, 100) + error(0.5, 20) + approve(0.5, 20))
    assert not cert.certified
    assert cert.stopped_at is None
    assert cert.best is not None
    assert cert.best["t"] == 0.95
    assert cert.needed_error_free == 49


def test_all_approved_certifies_everything() -> None:
    outcomes = [Outcome(j / 500, "approve") for j in range(500)]
    cert = cal.certify(outcomes)
    assert cert.certified
    assert cert.threshold_t == 0.0
    assert cert.theta == 0.0
    assert (cert.n, cert.k, cert.coverage) == (500, 0, 1.0)
    assert cert.upper_bound == pytest.approx(1 - DELTA ** (1 / 500), rel=1e-12)
    assert cert.stopped_at is None
    assert cal.ece(outcomes) == pytest.approx(1 - sum(j / 500 for j in range(500)) / 500)
    assert all(b["error_rate"] == 0.0 for b in cal.bands(outcomes))


def test_empty_input() -> None:
    assert cal.ece([]) is None
    assert cal.brier([]) is None
    assert cal.reliability([]) == []
    per_band = cal.bands([])
    assert len(per_band) == 10
    assert all(b["n"] == 0 and b["approved_share"] is None for b in per_band)
    assert all(b["mean_confidence"] is None and b["accuracy"] is None for b in per_band)
    cert = cal.certify([])
    assert not cert.certified
    assert (cert.n, cert.k, cert.total, cert.coverage) == (0, 0, 0, 0.0)
    assert cert.needed_error_free == 149
    assert cert.best is not None and cert.best["t"] == 1.0
    report = cal.as_json([])
    json.dumps(report, allow_nan=False)
    assert report["total"] == 0 and report["ece"] is None


def test_one_case() -> None:
    outcomes = [Outcome(0.8, "approve")]
    assert cal.ece(outcomes) == pytest.approx(0.2)
    assert cal.brier(outcomes) == pytest.approx(0.04)
    [point] = cal.reliability(outcomes)
    assert point["band"] == 8 and point["n"] == 1
    assert point["gap"] == pytest.approx(0.2)
    cert = cal.certify(outcomes)
    assert not cert.certified
    assert cert.best is not None and cert.best["t"] == 0.8
    assert cert.needed_error_free == 148


# --- bands, ECE, Brier ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidence", "band"),
    [
        (0.0, 0),
        (0.0999, 0),
        (0.1, 1),
        (0.3, 3),
        (0.7, 7),
        (0.9, 9),
        (0.95, 9),
        (1.0, 9),
    ],
)
def test_band_edges(confidence: float, band: int) -> None:
    assert cal.band_index(confidence) == band
    per_band = cal.bands([Outcome(confidence, "approve")])
    assert [b["n"] for b in per_band].index(1) == band


def test_bands_counts_and_shares() -> None:
    outcomes = approve(0.95, 2) + error(0.92, 1, "modify") + error(0.91, 1, "reject")
    band = cal.bands(outcomes)[9]
    assert (band["lo"], band["hi"], band["label"]) == (0.9, 1.0, "0.9–1.0")
    assert (band["n"], band["approved"], band["modified"], band["rejected"]) == (4, 2, 1, 1)
    assert band["errors"] == 2
    assert band["approved_share"] == 0.5
    assert band["modified_share"] == 0.25
    assert band["rejected_share"] == 0.25
    assert band["error_rate"] == 0.5
    assert band["accuracy"] == 0.5
    assert band["mean_confidence"] == pytest.approx((0.95 * 2 + 0.92 + 0.91) / 4)


def test_ece_and_brier_hand_computed() -> None:
    outcomes = [
        Outcome(0.95, "approve"),
        Outcome(0.95, "reject"),
        Outcome(0.85, "approve"),
        Outcome(0.15, "modify"),
    ]
    # Band 9: 2/4 * |0.5 - 0.95|; band 8: 1/4 * |1 - 0.85|; band 1: 1/4 * |0 - 0.15|.
    assert cal.ece(outcomes) == pytest.approx(0.225 + 0.0375 + 0.0375)
    # (0.05^2 + 0.95^2 + 0.15^2 + 0.15^2) / 4
    assert cal.brier(outcomes) == pytest.approx(0.95 / 4)
    points = cal.reliability(outcomes)
    assert [p["band"] for p in points] == [1, 8, 9]
    assert points[2]["accuracy"] == 0.5
    assert points[2]["mean_confidence"] == pytest.approx(0.95)


def test_tuples_are_accepted() -> None:
    assert cal.brier([(0.8, "approve")]) == pytest.approx(0.04)


@pytest.mark.parametrize(
    ("confidence", "decision"),
    [(1.5, "approve"), (-0.1, "approve"), (math.nan, "approve"), (True, "approve"), (0.5, "ok")],
)
def test_outcome_validation(confidence: float, decision: str) -> None:
    with pytest.raises(ValueError):
        Outcome(confidence, decision)


def test_as_json_is_serialisable_and_rounded() -> None:
    outcomes = approve(0.957, 200) + error(0.5, 50) + [Outcome(1 / 3, "modify")]
    report = cal.as_json(outcomes)
    text = json.dumps(report, allow_nan=False)
    assert "0.333333" in text and "0.3333333" not in text
    assert report["certificate"]["certified"] is True
    assert report["certificate"]["theta"] == 0.957
    assert len(report["bands"]) == 10


# --- binomial arithmetic -------------------------------------------------------------------


@pytest.mark.parametrize("p", [1e-6, 0.001, 0.02, 0.1, 0.3, 0.5, 0.77, 0.98, 0.999999])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 13, 40, 77])
def test_binom_cdf_matches_exact_fractions(n: int, p: float) -> None:
    for k in range(-1, n + 2):
        exact = exact_cdf(k, n, p) if k >= 0 else Fraction(0)
        got = cal.binom_cdf(k, n, p)
        if exact < Fraction(1, 10**300):
            assert got < 1e-290
        else:
            assert got == pytest.approx(float(exact), rel=1e-12, abs=0)


def test_binom_cdf_edges() -> None:
    assert cal.binom_cdf(0, 0, 0.3) == 1.0
    assert cal.binom_cdf(3, 10, 0.0) == 1.0
    assert cal.binom_cdf(3, 10, 1.0) == 0.0
    assert cal.binom_cdf(10, 10, 1.0) == 1.0
    assert cal.binom_cdf(-1, 10, 0.5) == 0.0
    with pytest.raises(ValueError):
        cal.binom_cdf(1, -1, 0.5)
    with pytest.raises(ValueError):
        cal.binom_cdf(1, 10, 1.5)


def test_binom_cdf_large_n_is_fast_and_accurate() -> None:
    start = time.perf_counter()
    # Odd n, p = 1/2: P(X <= (n - 1) / 2) is exactly 1/2 by symmetry.
    assert cal.binom_cdf(5 * 10**6, 10**7 + 1, 0.5) == pytest.approx(0.5, abs=1e-12)
    assert cal.binom_cdf(5 * 10**5, 10**6 + 1, 0.5) == pytest.approx(0.5, abs=1e-12)
    # P(X <= k) = 1 - P(n - X <= n - k - 1): the two sides run different tail sums.
    n = 10**6
    for p in (0.02, 0.3):
        mode = int(n * p)
        for k in (mode - 2000, mode - 1, mode, mode + 1, mode + 2000):
            left = cal.binom_cdf(k, n, p)
            right = cal.binom_cdf(n - k - 1, n, 1 - p)
            assert left + right == pytest.approx(1.0, abs=1e-12)
    # Extreme tails underflow to 0 / saturate at 1 without overflow errors.
    assert cal.binom_cdf(0, 10**7, 0.5) == 0.0
    assert cal.binom_cdf(10**7 - 1, 10**7, 0.5) == 1.0
    assert 0.0 < cal.binom_cdf(19_000, 10**6, 0.02) < 1e-10
    assert cal.cp_upper(20_000, 10**6, DELTA) > 0.02
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0


def test_binom_cdf_exact_at_large_n_against_integer_binomial() -> None:
    # n even, p = 1/2: P(X <= n/2 - 1) = (1 - C(n, n/2) / 2^n) / 2, exactly.
    n = 10**5
    centre = Fraction(math.comb(n, n // 2), 2**n)
    expected = float((1 - centre) / 2)
    assert cal.binom_cdf(n // 2 - 1, n, 0.5) == pytest.approx(expected, rel=1e-12)


def test_cp_upper_edges() -> None:
    assert cal.cp_upper(0, 0, DELTA) == 1.0
    assert cal.cp_upper(5, 5, DELTA) == 1.0
    assert cal.cp_upper(0, 1, DELTA) == pytest.approx(0.95)
    assert cal.cp_upper(0, 10, DELTA) == pytest.approx(1 - DELTA**0.1, rel=1e-14)
    with pytest.raises(ValueError):
        cal.cp_upper(0, 10, 0.0)
    with pytest.raises(ValueError):
        cal.cp_upper(-1, 10, DELTA)


@pytest.mark.parametrize(("k", "n"), [(1, 10), (3, 50), (1, 236), (10, 160), (500, 1000)])
def test_cp_upper_solves_the_tail_equation(k: int, n: int) -> None:
    u = cal.cp_upper(k, n, DELTA)
    assert k / n < u < 1
    assert cal.binom_cdf(k, n, u) == pytest.approx(DELTA, rel=1e-10)


def test_bound_and_pvalue_agree() -> None:
    for n in range(149, 420, 9):
        for k in range(0, 6):
            by_bound = cal.cp_upper(k, n, DELTA) <= ALPHA
            by_pvalue = cal.binom_cdf(k, n, ALPHA) <= DELTA
            assert by_bound == by_pvalue, (n, k)


@pytest.mark.parametrize(
    ("alpha", "delta", "expected"),
    [(0.02, 0.05, 149), (0.5, 0.25, 2), (0.5, 0.5, 1), (0.1, 0.1, 22), (0.01, 0.01, 459)],
)
def test_n_min(alpha: float, delta: float, expected: int) -> None:
    assert cal.n_min(alpha, delta) == expected
    # Definition: the smallest n whose all-clean p-value (1 - alpha)^n is <= delta.
    assert (1 - alpha) ** expected <= delta
    assert expected == 1 or (1 - alpha) ** (expected - 1) > delta


@pytest.mark.parametrize(("alpha", "delta"), [(0.0, 0.05), (1.0, 0.05), (0.02, 0.0), (0.02, 1)])
def test_n_min_rejects_bad_parameters(alpha: float, delta: float) -> None:
    with pytest.raises(ValueError):
        cal.n_min(alpha, delta)


def test_needed_error_free() -> None:
    assert cal.needed_error_free(100, 0, ALPHA, DELTA) == 49
    assert cal.needed_error_free(500, 0, ALPHA, DELTA) == 0
    assert cal.needed_error_free(235, 1, ALPHA, DELTA) == 1
    assert cal.needed_error_free(236, 1, ALPHA, DELTA) == 0
    assert cal.needed_error_free(10, 1, ALPHA, DELTA) == 226


def test_certify_large_input_is_fast() -> None:
    outcomes = [
        Outcome((i % 1000) / 1000, "approve" if i % 7 else "modify") for i in range(200_000)
    ]
    start = time.perf_counter()
    cert = cal.certify(outcomes)
    assert time.perf_counter() - start < 2.0
    assert not cert.certified
    assert cert.needed_error_free is not None and cert.needed_error_free > 0
