"""Pure arithmetic of the learning loop: QA sampling of autonomous actions and the fall-back.

An agent acts alone above its certified threshold; a share pi of those actions is drawn for
blind QA review. Each review gives e = 1 when the reviewer judged the action wrong (modify or
reject) and e = 0 when approved. Two monitors read those outcomes: the 28-day window
(`window_state`, exact Clopper-Pearson bounds) and a Bernoulli CUSUM (`cusum_*`) that reacts to
a sudden rise within days. No ORM, no clock: callers count and pass the numbers.

Binomial arithmetic comes from `escalation.calibration` (exact; never a normal approximation).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Iterable, Iterator
from typing import Any

from escalation.calibration import _check_delta, cp_upper

GREEN = "green"
AMBER = "amber"
RED = "red"

# The CUSUM decision interval fixed for alpha = 2%, in log-likelihood units (nats): 140 steps
# of ln(0.98 / 0.96), the log-likelihood ratio of one correct outcome at p0 = 2%, p1 = 4%.
CUSUM_H = 140 * math.log(0.98 / 0.96)


def _check_counts(k: int, n: int) -> None:
    for name, value in (("n", n), ("k", k)):
        # bool is an int subclass; True must not pass as a count of 1.
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if k > n:
        raise ValueError(f"k must be <= n, got k = {k}, n = {n}")


def _check_alpha(alpha: float) -> None:
    # One range for every function: the CUSUM's out-of-control rate 2 alpha must be below 1,
    # and the same budget drives the window and the CUSUM of a scope.
    if not 0.0 < alpha < 0.5:  # also rejects NaN
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha!r}")


def cp_lower(k: int, n: int, delta: float) -> float:
    """Exact one-sided (1 - delta) Clopper-Pearson lower bound: the L with
    P(Bin(n, L) >= k) = delta, and 0.0 when k == 0.

    By symmetry (X ~ Bin(n, L) iff n - X ~ Bin(n, 1 - L)) it is 1 - cp_upper(n - k, n, delta),
    accurate to ~1e-12 absolute (cp_upper's relative accuracy, near 1).
    """
    _check_counts(k, n)
    # k == 0: cp_upper(n, n, delta) is 1.0 exactly, so this is 0.0 (after checking delta).
    return 1.0 - cp_upper(n - k, n, delta)


def window_state(
    n: int, k: int, alpha: float, delta: float = 0.05, *, red_delta: float = 0.05
) -> str:
    """The state of a scope for k QA errors among n QA samples over the last 28 days.

    red: the (1 - red_delta) lower bound exceeds alpha, evidence of a breach (fall back).
    amber: no such evidence, but the (1 - delta) upper bound exceeds alpha, so the scope could
    not be re-certified on this window. green: the upper bound is within the budget.
    n == 0 is amber: no evidence either way.
    """
    _check_counts(k, n)
    _check_alpha(alpha)
    _check_delta(delta)
    _check_delta(red_delta)
    if n == 0:
        return AMBER
    if cp_lower(k, n, red_delta) > alpha:
        return RED
    if cp_upper(k, n, delta) > alpha:
        return AMBER
    return GREEN


def qa_rate(
    volume_28d: int,
    *,
    amber: bool = False,
    floor_volume: int = 1000,
    target_samples: int = 400,
    minimum: float = 0.02,
) -> float:
    """Share pi of autonomous actions to send to QA: about target_samples per 28 days.

    pi = min(1, max(minimum, target_samples / max(volume_28d, floor_volume))), doubled while
    amber. The floor volume keeps a quiet scope from reviewing everything; the minimum keeps a
    busy one from starving the CUSUM; doubling while amber gathers evidence faster.
    """
    if isinstance(volume_28d, bool) or not isinstance(volume_28d, int) or volume_28d < 0:
        raise ValueError(f"volume_28d must be a non-negative integer, got {volume_28d!r}")
    if floor_volume < 1 or target_samples < 0:
        raise ValueError("floor_volume must be >= 1 and target_samples >= 0")
    if not 0.0 <= minimum <= 1.0:
        raise ValueError(f"minimum must be in [0, 1], got {minimum!r}")
    rate = min(1.0, max(minimum, target_samples / max(volume_28d, floor_volume)))
    return min(1.0, 2.0 * rate) if amber else rate


def qa_draw(secret: bytes, key: str, rate: float) -> bool:
    """Whether the action `key` is drawn for QA at share `rate`.

    A keyed hash rather than a random draw: the same key always gives the same answer (retries
    and re-runs cannot re-roll it), and without the secret an agent cannot predict which of its
    actions will be reviewed. u = the first 8 bytes of HMAC-SHA256(secret, key), big-endian;
    drawn when u < rate * 2^64 (an exact int-float comparison), so rate 0 never, rate 1 always.
    """
    if not 0.0 <= rate <= 1.0:  # also rejects NaN
        raise ValueError(f"rate must be in [0, 1], got {rate!r}")
    digest = hmac.new(secret, key.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") < rate * 2.0**64


def cusum_constants(alpha: float) -> tuple[int, int]:
    """(w, h) of the Bernoulli CUSUM C_n = max(0, C_(n-1) + w e_n - 1), red at C_n >= h.

    Derivation: the log-likelihood-ratio CUSUM of p1 = 2 alpha against p0 = alpha adds
    ln(p1 / p0) for an error and ln((1 - p1) / (1 - p0)) = -s for a correct outcome, with
    s = ln((1 - p0) / (1 - p1)) > 0, and signals when the sum reaches H. Dividing every step by
    s makes a correct outcome subtract exactly 1 and an error add ln(p1 / p0) / s; rounding that
    to an integer gives w - 1, so w = 1 + round(ln(p1 / p0) / s), and the interval becomes
    h = round(H / s), H = 140 ln(0.98 / 0.96) (fixed for alpha = 2%). Integer constants keep
    C_n an exact integer. alpha = 2%: ln 2 / s = 33.6, so w = 35 and h = 140.

    Near alpha = 0.5 the rounding degenerates (w = 1 never rises; h = 0 always fires), so those
    budgets are refused rather than given a monitor that cannot work (alpha > ~0.43).
    """
    _check_alpha(alpha)
    p0, p1 = alpha, 2.0 * alpha
    s = math.log((1.0 - p0) / (1.0 - p1))
    w = 1 + round(math.log(p1 / p0) / s)
    h = round(CUSUM_H / s)
    if w < 2 or h < 1:
        raise ValueError(f"alpha = {alpha!r} is too large for a Bernoulli CUSUM (w={w}, h={h})")
    return w, h


def _cusum(errors: Iterable[int], w: int) -> Iterator[int]:
    c = 0
    for e in errors:
        if e not in (0, 1):
            raise ValueError(f"QA outcomes must be 0 or 1, got {e!r}")
        c = max(0, c + w * e - 1)
        yield c


def cusum_trace(errors: Iterable[int], alpha: float) -> list[float]:
    """C_n after each outcome (C_0 = 0 is not included), with `cusum_constants(alpha)`."""
    w, _ = cusum_constants(alpha)
    return [float(c) for c in _cusum(errors, w)]


def cusum_fires(errors: Iterable[int], alpha: float) -> int | None:
    """1-based index of the first outcome with C_n >= h, or None. Stops reading there, so an
    endless stream is fine."""
    w, h = cusum_constants(alpha)
    for i, c in enumerate(_cusum(errors, w), start=1):
        if c >= h:
            return i
    return None


def budget(actions: int, qa_n: int, qa_k: int, alpha: float, delta: float = 0.05) -> dict[str, Any]:
    """A scope's 28-day error budget and how fast QA says it is being spent.

    budget = alpha * actions (errors allowed); error_rate = qa_k / qa_n; estimated_errors =
    actions * error_rate, with one-sided (1 - delta) Clopper-Pearson bounds on each side;
    burn_rate = error_rate / alpha (above 1: spending faster than allowed). Everything that
    needs a QA sample is None when qa_n == 0.
    """
    if isinstance(actions, bool) or not isinstance(actions, int) or actions < 0:
        raise ValueError(f"actions must be a non-negative integer, got {actions!r}")
    _check_counts(qa_k, qa_n)
    _check_alpha(alpha)
    _check_delta(delta)
    result: dict[str, Any] = {
        "budget": alpha * actions,
        "error_rate": None,
        "estimated_errors": None,
        "estimated_errors_low": None,
        "estimated_errors_high": None,
        "burn_rate": None,
    }
    if qa_n:
        rate = qa_k / qa_n
        result["error_rate"] = rate
        result["estimated_errors"] = actions * rate
        result["estimated_errors_low"] = actions * cp_lower(qa_k, qa_n, delta)
        result["estimated_errors_high"] = actions * cp_upper(qa_k, qa_n, delta)
        result["burn_rate"] = rate / alpha
    return result
