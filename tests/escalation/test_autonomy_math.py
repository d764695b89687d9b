from __future__ import annotations

import hashlib
import hmac
import itertools
import math

import pytest

from escalation import autonomy_math as am
from escalation.calibration import binom_cdf, cp_upper

SECRET = b"test-qa-secret"


# --- cp_lower ------------------------------------------------------------------------------


def test_cp_lower_matches_the_issue_vectors():
    assert am.cp_lower(7, 200, 0.05) == pytest.approx(0.016540, abs=5e-7)
    assert am.cp_lower(8, 200, 0.05) == pytest.approx(0.020057, abs=5e-7)


@pytest.mark.parametrize(
    ("k", "n", "delta"),
    [(1, 1, 0.05), (7, 200, 0.05), (8, 200, 0.05), (3, 10, 0.1), (150, 5000, 0.01), (40, 41, 0.05)],
)
def test_cp_lower_solves_its_defining_equation(k, n, delta):
    low = am.cp_lower(k, n, delta)
    # P(Bin(n, L) >= k) = 1 - P(Bin(n, L) <= k - 1) = delta
    assert 1.0 - binom_cdf(k - 1, n, low) == pytest.approx(delta, rel=1e-9)
    assert 0.0 < low < k / n <= 1.0


def test_cp_lower_is_zero_without_errors():
    assert am.cp_lower(0, 200, 0.05) == 0.0
    assert am.cp_lower(0, 0, 0.05) == 0.0


def test_cp_lower_with_every_sample_an_error_is_delta_to_the_one_over_n():
    # P(Bin(n, L) >= n) = L^n = delta
    assert am.cp_lower(200, 200, 0.05) == pytest.approx(0.05 ** (1 / 200), rel=1e-12)
    assert am.cp_lower(1, 1, 0.05) == pytest.approx(0.05, rel=1e-12)


def test_cp_lower_lies_below_cp_upper():
    for k in range(0, 21):
        assert am.cp_lower(k, 20, 0.05) < cp_upper(k, 20, 0.05)


@pytest.mark.parametrize(
    ("k", "n", "delta"),
    [(-1, 10, 0.05), (1, -1, 0.05), (11, 10, 0.05), (True, 10, 0.05), (1, 10, 0.0), (1, 10, 1.0)],
)
def test_cp_lower_rejects_invalid_arguments(k, n, delta):
    with pytest.raises(ValueError):
        am.cp_lower(k, n, delta)


# --- window_state --------------------------------------------------------------------------


def test_window_state_turns_red_only_when_the_lower_bound_exceeds_the_budget():
    # k = 7: lower bound 0.01654 <= 2%, upper bound 0.0647 > 2%
    assert am.window_state(200, 7, 0.02) == "amber"
    # k = 8: lower bound 0.020057 > 2%
    assert am.window_state(200, 8, 0.02) == "red"


def test_window_state_is_green_when_the_upper_bound_is_within_the_budget():
    # 1 - 0.05^(1/200) = 0.01487 <= 2%
    assert am.window_state(200, 0, 0.02) == "green"


def test_window_state_without_samples_is_amber():
    assert am.window_state(0, 0, 0.02) == "amber"


def test_window_state_uses_delta_for_amber_and_red_delta_for_red():
    # 1 - 0.01^(1/200) = 0.0228 > 2%: the stricter upper bound cannot re-certify
    assert am.window_state(200, 0, 0.02, 0.01) == "amber"
    # delta does not touch the red test ...
    assert am.window_state(200, 8, 0.02, 0.01) == "red"
    # ... red_delta does: the 99% lower bound at k = 8 is below 2%
    assert am.cp_lower(8, 200, 0.01) < 0.02
    assert am.window_state(200, 8, 0.02, red_delta=0.01) == "amber"


@pytest.mark.parametrize(
    ("n", "k", "alpha"),
    [(200, 7, 0.0), (200, 7, 0.5), (200, 7, -0.1), (200, 201, 0.02), (-1, 0, 0.02), (10, -1, 0.02)],
)
def test_window_state_rejects_invalid_arguments(n, k, alpha):
    with pytest.raises(ValueError):
        am.window_state(n, k, alpha)


# --- qa_rate and qa_draw -------------------------------------------------------------------


def test_qa_rate_aims_at_400_samples_within_its_floor_and_minimum():
    assert am.qa_rate(10_000) == pytest.approx(0.04)
    assert am.qa_rate(40_000) == pytest.approx(0.02)  # 0.01 raised to the minimum
    assert am.qa_rate(100) == pytest.approx(0.40)  # the floor volume of 1,000 applies
    assert am.qa_rate(0) == pytest.approx(0.40)


def test_qa_rate_doubles_while_amber_but_never_exceeds_one():
    assert am.qa_rate(10_000, amber=True) == pytest.approx(0.08)
    assert am.qa_rate(100, amber=True) == pytest.approx(0.80)
    assert am.qa_rate(100, target_samples=800, amber=True) == 1.0
    assert am.qa_rate(100, target_samples=5_000) == 1.0


@pytest.mark.parametrize(
    "kwargs",
    [{"volume_28d": -1}, {"volume_28d": 10, "floor_volume": 0}, {"volume_28d": 10, "minimum": 1.5}],
)
def test_qa_rate_rejects_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        am.qa_rate(**kwargs)


def test_qa_draw_is_stable_for_a_repeated_key():
    draws = {am.qa_draw(SECRET, "case-42", 0.5) for _ in range(20)}
    assert len(draws) == 1


def test_qa_draw_compares_the_first_eight_hmac_bytes_with_rate_times_two_to_the_64():
    for i in range(200):
        key = f"case-{i}"
        u = int.from_bytes(hmac.new(SECRET, key.encode(), hashlib.sha256).digest()[:8], "big")
        assert am.qa_draw(SECRET, key, 0.3) is (u < 0.3 * 2**64)


def test_qa_draw_samples_about_the_rate():
    drawn = sum(am.qa_draw(SECRET, f"case-{i}", 0.02) for i in range(10_000))
    assert 200 - 42 <= drawn <= 200 + 42  # 3 standard deviations of Bin(10,000, 2%)


def test_qa_draw_at_rate_zero_draws_nothing_and_at_rate_one_everything():
    keys = [f"case-{i}" for i in range(1_000)]
    assert not any(am.qa_draw(SECRET, key, 0.0) for key in keys)
    assert all(am.qa_draw(SECRET, key, 1.0) for key in keys)


@pytest.mark.parametrize("rate", [-0.01, 1.01, math.nan])
def test_qa_draw_rejects_a_rate_outside_zero_one(rate):
    with pytest.raises(ValueError):
        am.qa_draw(SECRET, "case-1", rate)


# --- CUSUM ---------------------------------------------------------------------------------


def test_cusum_constants_for_a_two_percent_budget_are_35_and_140():
    assert am.cusum_constants(0.02) == (35, 140)


def test_cusum_constants_for_a_one_percent_budget():
    # s = ln(0.99 / 0.98) = 0.0101524; ln 2 / s = 68.27 -> w = 69;
    # H / s = 140 ln(0.98 / 0.96) / s = 2.88663 / 0.0101524 = 284.3 -> h = 284
    assert am.cusum_constants(0.01) == (69, 284)


@pytest.mark.parametrize("alpha", [0.0, 0.5, -0.02, 1.2, 0.45, math.nan])
def test_cusum_constants_reject_budgets_outside_the_usable_range(alpha):
    with pytest.raises(ValueError):
        am.cusum_constants(alpha)


def test_cusum_ignores_correct_outcomes_at_zero_and_fires_at_the_fifth_consecutive_error():
    stream = [0] * 10 + [1] * 5
    assert am.cusum_trace(stream, 0.02) == [0.0] * 10 + [34.0, 68.0, 102.0, 136.0, 170.0]
    assert am.cusum_fires(stream, 0.02) == 15


def test_cusum_loses_one_per_correct_outcome_between_errors():
    stream = [1, 0, 1, 0, 0, 1]
    assert am.cusum_trace(stream, 0.02) == [34.0, 33.0, 67.0, 66.0, 65.0, 99.0]
    assert am.cusum_fires(stream, 0.02) is None


def test_cusum_decays_back_to_zero_and_stays_there():
    trace = am.cusum_trace([1] + [0] * 40, 0.02)
    assert trace == [34.0] + [float(c) for c in range(33, -1, -1)] + [0.0] * 6
    assert am.cusum_fires([1] + [0] * 40, 0.02) is None


def test_cusum_fires_when_c_reaches_h_exactly():
    # 4 errors -> 136; 30 correct -> 106; 1 error -> 140 = h
    stream = [1] * 4 + [0] * 30 + [1]
    assert am.cusum_trace(stream, 0.02)[-2:] == [106.0, 140.0]
    assert am.cusum_fires(stream, 0.02) == 35
    assert am.cusum_fires(stream[:-1], 0.02) is None


def test_cusum_fires_stops_reading_an_endless_stream():
    assert am.cusum_fires(itertools.repeat(1), 0.02) == 5


def test_cusum_of_an_empty_stream():
    assert am.cusum_trace([], 0.02) == []
    assert am.cusum_fires([], 0.02) is None


def test_cusum_rejects_an_outcome_other_than_zero_or_one():
    with pytest.raises(ValueError):
        am.cusum_trace([0, 2], 0.02)
    with pytest.raises(ValueError):
        am.cusum_fires([-1], 0.02)


# --- budget --------------------------------------------------------------------------------


def test_budget_matches_the_issue_vector():
    result = am.budget(10_000, 200, 9, 0.02)
    assert result["budget"] == pytest.approx(200.0)
    assert result["error_rate"] == pytest.approx(0.045)
    assert result["estimated_errors"] == pytest.approx(450.0)
    assert result["burn_rate"] == pytest.approx(2.25)
    assert result["estimated_errors_low"] == pytest.approx(236.7, abs=0.1)
    assert result["estimated_errors_high"] == pytest.approx(772.1, abs=0.1)


def test_budget_without_qa_samples_leaves_the_estimates_empty():
    assert am.budget(10_000, 0, 0, 0.02) == {
        "budget": pytest.approx(200.0),
        "error_rate": None,
        "estimated_errors": None,
        "estimated_errors_low": None,
        "estimated_errors_high": None,
        "burn_rate": None,
    }


def test_budget_without_qa_errors_has_a_zero_lower_bound():
    result = am.budget(10_000, 200, 0, 0.02)
    assert result["estimated_errors"] == 0.0
    assert result["estimated_errors_low"] == 0.0
    assert result["estimated_errors_high"] == pytest.approx(10_000 * (1 - 0.05 ** (1 / 200)))
    assert result["burn_rate"] == 0.0


@pytest.mark.parametrize(
    ("actions", "qa_n", "qa_k", "alpha"),
    [
        (-1, 10, 0, 0.02),
        (100, -1, 0, 0.02),
        (100, 10, 11, 0.02),
        (100, 10, -1, 0.02),
        (100, 10, 1, 0.0),
        (100, 10, 1, 0.5),
    ],
)
def test_budget_rejects_invalid_arguments(actions, qa_n, qa_k, alpha):
    with pytest.raises(ValueError):
        am.budget(actions, qa_n, qa_k, alpha)
