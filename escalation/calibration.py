"""Pure calibration statistics for one agent/queue: bands, reliability, ECE, Brier, certification.

Everything here is a function of its arguments (no ORM, no clock, no SciPy). Callers build
`Outcome(confidence, decision)` values from resolved cases and group them per agent and queue.

An *error* is a case a human modified or rejected; "accuracy" is the share approved as is.

Certified threshold (error budget alpha, confidence 1 - delta), a fixed-sequence test:
walk t = 1.00, 0.99, ..., 0.00; at each, n = cases with confidence >= t and k = errors among
them. A t with n < n_min(alpha, delta) is skipped (it can never certify); otherwise t is
certified while P(Binomial(n, alpha) <= k) <= delta, which is exactly "the one-sided
Clopper-Pearson upper bound of the error rate is <= alpha", and the walk stops at the first
tested t that fails. Testing in a fixed order and stopping at the first failure keeps the
family-wise error at delta; scanning on past a failure would be a multiple-testing error.

Float choices (documented once, used everywhere):
- A confidence c is "at or above" a grid point g when c >= g - EPS (EPS = 1e-9), so a stored
  0.93 (really 0.92999999999999993782) is selected at t = 0.93 and falls in band 9 when it is
  0.9 exactly. EPS is far below any meaningful confidence resolution.
- Grid points are integers j / 100 (j = 100 .. 0), never a float accumulated in steps.
- The certification decision uses the exact p-value at alpha, not the root-found bound, so it
  cannot be flipped by root-finding error (the reported bound is for display).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

BANDS = 10
GRID = 100  # thresholds t = j / GRID for j = GRID .. 0
EPS = 1e-9

APPROVE = "approve"
MODIFY = "modify"
REJECT = "reject"
DECISIONS = (APPROVE, MODIFY, REJECT)

DEFAULT_ALPHA = 0.02
DEFAULT_DELTA = 0.05

_LN_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
# Relative size below which a further tail term cannot change a double-precision sum.
_NEGLIGIBLE = 1e-17


@dataclass(frozen=True)
class Outcome:
    """One resolved case: the agent's confidence and the human's decision."""

    confidence: float
    decision: str

    def __post_init__(self) -> None:
        c = self.confidence
        # bool is an int subclass; True must not pass as "confidence 1".
        if isinstance(c, bool) or not isinstance(c, int | float) or not 0.0 <= c <= 1.0:
            raise ValueError(f"confidence must be a number in [0, 1], got {c!r}")
        if self.decision not in DECISIONS:
            raise ValueError(
                f"decision must be one of {', '.join(DECISIONS)}, got {self.decision!r}"
            )

    @property
    def is_error(self) -> bool:
        return self.decision != APPROVE


def _outcomes(outcomes: Iterable[Outcome | tuple[float, str]]) -> list[Outcome]:
    # Accept (confidence, decision) pairs too: handy for callers using values_list().
    return [o if isinstance(o, Outcome) else Outcome(*o) for o in outcomes]


# --- exact binomial arithmetic -------------------------------------------------------------


def _stirlerr_exact(n: int) -> float:
    return math.lgamma(n + 1.0) - (n + 0.5) * math.log(n) + n - _LN_SQRT_2PI


# For small n the Stirling series is not accurate enough; lgamma is (the values are small).
_STIRLERR_SMALL = [0.0] + [_stirlerr_exact(n) for n in range(1, 16)]


def _stirlerr(n: int) -> float:
    """log(n!) - log(sqrt(2 pi n) (n / e)^n), the Stirling remainder (Loader 2000)."""
    if n <= 15:
        return _STIRLERR_SMALL[n]
    nn = float(n) * n
    s0, s1, s2, s3, s4 = 1 / 12, 1 / 360, 1 / 1260, 1 / 1680, 1 / 1188
    if n > 500:
        return (s0 - s1 / nn) / n
    if n > 80:
        return (s0 - (s1 - s2 / nn) / nn) / n
    if n > 35:
        return (s0 - (s1 - (s2 - s3 / nn) / nn) / nn) / n
    return (s0 - (s1 - (s2 - (s3 - s4 / nn) / nn) / nn) / nn) / n


def _bd0(x: float, m: float) -> float:
    """x log(x / m) + m - x, without the cancellation of the naive form when x ~ m."""
    if abs(x - m) < 0.1 * (x + m):
        v = (x - m) / (x + m)
        s = (x - m) * v
        ej = 2.0 * x * v
        v2 = v * v
        # |v| < 0.1, so the series gains two digits per term; the cap is only a safety net.
        for j in range(1, 1000):
            ej *= v2
            s1 = s + ej / (2 * j + 1)
            if s1 == s:
                return s1
            s = s1
        return s
    return x * math.log(x / m) + m - x


def _log_dbinom(x: int, n: int, p: float) -> float:
    """log P(Binomial(n, p) = x) for 0 < p < 1, via Loader's saddle-point form.

    Avoids log C(n, x) = lgamma(n+1) - lgamma(x+1) - lgamma(n-x+1), which loses ~8 digits to
    cancellation when n ~ 10^7.
    """
    q = 1.0 - p
    if x == 0:
        return n * (math.log(q) if p > 0.5 else math.log1p(-p))
    if x == n:
        return n * (math.log(p) if p > 0.5 else math.log1p(-q))
    lc = _stirlerr(n) - _stirlerr(x) - _stirlerr(n - x) - _bd0(x, n * p) - _bd0(n - x, n * q)
    return lc + 0.5 * math.log(n / (2.0 * math.pi * x * (n - x)))


def _check_binom(k: int, n: int, p: float) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if isinstance(k, bool) or not isinstance(k, int):
        raise ValueError(f"k must be an integer, got {k!r}")
    if not 0.0 <= p <= 1.0:  # also rejects NaN
        raise ValueError(f"p must be in [0, 1], got {p!r}")


def binom_pmf(x: int, n: int, p: float) -> float:
    """P(Binomial(n, p) = x)."""
    _check_binom(x, n, p)
    if x < 0 or x > n:
        return 0.0
    if p == 0.0:
        return 1.0 if x == 0 else 0.0
    if p == 1.0:
        return 1.0 if x == n else 0.0
    return math.exp(_log_dbinom(x, n, p))


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) <= k), to ~1e-13 relative error, fast for n up to ~10^7.

    Sums the tail that lies away from the mode (so terms shrink monotonically and the sum stops
    once they are negligible, after O(sqrt(n p q)) terms at most): the lower tail directly when
    k is below the mode, otherwise 1 - the upper tail, which is then <= ~1/2 so the subtraction
    loses nothing. Terms are scaled by the first (largest) one, computed in log space, so
    neither overflow nor premature underflow can happen.
    """
    _check_binom(k, n, p)
    if k < 0:
        return 0.0
    if k >= n or p == 0.0:
        return 1.0
    if p == 1.0:
        return 0.0
    q = 1.0 - p
    mode = min(n, math.floor((n + 1) * p))
    if k < mode:
        # Lower tail k, k-1, ..., 0: t(j-1) / t(j) = j q / ((n - j + 1) p) < 1 below the mode.
        log_first = _log_dbinom(k, n, p)
        ratio = q / p
        terms = [1.0]
        t = 1.0
        for j in range(k, 0, -1):
            r = j / (n - j + 1) * ratio
            t *= r
            terms.append(t)
            # Ratios keep falling, so the rest is below the geometric sum t r / (1 - r).
            if t * r < _NEGLIGIBLE * (1.0 - r):
                break
        total = math.fsum(terms)
        return min(1.0, math.exp(log_first + math.log(total)))
    # Upper tail k+1, ..., n: t(j+1) / t(j) = (n - j) p / ((j + 1) q) < 1 above the mode.
    log_first = _log_dbinom(k + 1, n, p)
    ratio = p / q
    terms = [1.0]
    t = 1.0
    for j in range(k + 1, n):
        r = (n - j) / (j + 1) * ratio
        t *= r
        terms.append(t)
        if t * r < _NEGLIGIBLE * (1.0 - r):
            break
    upper = math.exp(log_first + math.log(math.fsum(terms)))
    return max(0.0, 1.0 - upper)


def cp_upper(k: int, n: int, delta: float) -> float:
    """Exact one-sided Clopper-Pearson upper bound: the u with P(Binomial(n, u) <= k) = delta.

    n == 0 or k >= n gives 1.0 (no information / no bound below 1). k == 0 has the closed form
    1 - delta^(1/n). Otherwise a bracketed Newton iteration (bisection fallback) on
    F(u) = P(Bin(n, u) <= k), using dF/du = -n P(Bin(n-1, u) = k), to ~1e-12 relative.
    """
    _check_delta(delta)
    _check_binom(k, n, 0.5)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if n == 0 or k >= n:
        return 1.0
    if k == 0:
        return -math.expm1(math.log(delta) / n)
    lo, hi = 0.0, 1.0  # F(lo) > delta >= F(hi)
    u = (k + 1) / (n + 1)
    for _ in range(300):
        f = binom_cdf(k, n, u) - delta
        if f == 0.0:
            return u
        if f > 0.0:
            lo = u
        else:
            hi = u
        slope = -n * math.exp(_log_dbinom(k, n - 1, u))
        nxt = u - f / slope if slope < 0.0 else math.nan
        # Fall back to bisection when Newton leaves the bracket (or the slope underflowed).
        if not lo < nxt < hi:
            nxt = 0.5 * (lo + hi)
        if abs(nxt - u) <= 1e-15 * nxt:
            return nxt
        u = nxt
    return hi


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def _check_delta(delta: float) -> None:
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")


def n_min(alpha: float, delta: float) -> int:
    """ceil(ln delta / ln(1 - alpha)): the fewest cases that can certify (all error-free).

    Computed as the smallest n with (1 - alpha)^n <= delta, nudging the float quotient so an
    exact integer ratio (e.g. alpha = 0.5, delta = 0.25 -> 2) is not pushed up by rounding.
    """
    _check_alpha(alpha)
    _check_delta(delta)
    log_q = math.log1p(-alpha)
    n = max(1, math.ceil(math.log(delta) / log_q))
    while n > 1 and math.exp((n - 1) * log_q) <= delta:
        n -= 1
    while math.exp(n * log_q) > delta:
        n += 1
    return n


def needed_error_free(n: int, k: int, alpha: float, delta: float) -> int:
    """Fewest extra error-free cases m with P(Binomial(n + m, alpha) <= k) <= delta.

    For k == 0 this is max(0, n_min - n). The p-value falls as n grows with k fixed, so an
    exponential search followed by bisection finds the smallest m.
    """
    floor_n = n_min(alpha, delta)
    if k == 0:
        return max(0, floor_n - n)

    def ok(total: int) -> bool:
        return binom_cdf(k, total, alpha) <= delta

    lo = max(n, floor_n)  # below n_min nothing can pass, so starting there loses no answer
    if ok(lo):
        return lo - n
    # Jump straight towards k / alpha, where the binomial mean first exceeds k.
    step = max(1, int(k / alpha) - lo)
    hi = lo + step
    while not ok(hi):
        lo, step = hi, step * 2
        hi = lo + step
    while hi - lo > 1:  # invariant: lo fails, hi passes
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi - n


def _needed_lower_bound(n: int, k: int, alpha: float, delta: float, floor_n: int) -> int:
    """A cheap lower bound on needed_error_free, used only to prune the search for the best."""
    bound = floor_n - n
    if delta < 0.5:
        # With k >= the median (>= floor(N alpha)) P(X <= k) >= 1/2 > delta, so N > k / alpha;
        # one less than that, to be safe against float rounding.
        bound = max(bound, math.floor(k / alpha) - n)
    return max(0, bound)


# --- bands, reliability, ECE, Brier --------------------------------------------------------


def band_index(confidence: float) -> int:
    """Band 0..9: [i/10, (i+1)/10), the last band also holding 1.0 (EPS tolerance at edges)."""
    return min(BANDS - 1, math.floor((confidence + EPS) * BANDS))


def bands(outcomes: Iterable[Outcome | tuple[float, str]]) -> list[dict[str, Any]]:
    """Per confidence band: counts, shares (None when empty), mean confidence, error rate."""
    items = _outcomes(outcomes)
    counts = [{APPROVE: 0, MODIFY: 0, REJECT: 0} for _ in range(BANDS)]
    sums = [0.0] * BANDS
    for o in items:
        i = band_index(o.confidence)
        counts[i][o.decision] += 1
        sums[i] += o.confidence
    return _band_rows(counts, sums)


def _band_rows(counts: list[dict[str, int]], sums: list[float]) -> list[dict[str, Any]]:
    """The per-band rows of `bands` from per-band decision counts and confidence sums."""
    result = []
    for i in range(BANDS):
        c = counts[i]
        n = c[APPROVE] + c[MODIFY] + c[REJECT]
        errors = c[MODIFY] + c[REJECT]

        def share(x: int, n: int = n) -> float | None:
            return x / n if n else None

        result.append(
            {
                "band": i,
                "lo": i / BANDS,
                "hi": (i + 1) / BANDS,
                "label": f"{i / BANDS:.1f}–{(i + 1) / BANDS:.1f}",
                "n": n,
                "approved": c[APPROVE],
                "modified": c[MODIFY],
                "rejected": c[REJECT],
                "errors": errors,
                "approved_share": share(c[APPROVE]),
                "modified_share": share(c[MODIFY]),
                "rejected_share": share(c[REJECT]),
                "mean_confidence": sums[i] / n if n else None,
                "error_rate": share(errors),
                "accuracy": share(c[APPROVE]),
            }
        )
    return result


def reliability(outcomes: Iterable[Outcome | tuple[float, str]]) -> list[dict[str, Any]]:
    """Reliability-diagram points for non-empty bands: mean confidence vs share approved as is.

    A perfectly calibrated agent lies on the diagonal; `gap` = accuracy - mean_confidence is
    negative where the agent is over-confident.
    """
    return _reliability_rows(bands(outcomes))


def _reliability_rows(per_band: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "band": b["band"],
            "lo": b["lo"],
            "hi": b["hi"],
            "n": b["n"],
            "mean_confidence": b["mean_confidence"],
            "accuracy": b["accuracy"],
            "gap": b["accuracy"] - b["mean_confidence"],
        }
        for b in per_band
        if b["n"]
    ]


def ece(outcomes: Iterable[Outcome | tuple[float, str]]) -> float | None:
    """Expected calibration error: sum over bands of n_b / N * |accuracy_b - confidence_b|."""
    return _ece_of(bands(outcomes))


def _ece_of(per_band: list[dict[str, Any]]) -> float | None:
    total = sum(b["n"] for b in per_band)
    if not total:
        return None
    return math.fsum(
        b["n"] / total * abs(b["accuracy"] - b["mean_confidence"]) for b in per_band if b["n"]
    )


def brier(outcomes: Iterable[Outcome | tuple[float, str]]) -> float | None:
    """Mean squared gap between confidence and "approved as is" (1) / error (0)."""
    items = _outcomes(outcomes)
    if not items:
        return None
    squares = ((o.confidence - (0.0 if o.is_error else 1.0)) ** 2 for o in items)
    return math.fsum(squares) / len(items)


# --- certification -------------------------------------------------------------------------


def _round(value: Any, places: int = 6) -> Any:
    if isinstance(value, float):
        return round(value, places)
    if isinstance(value, dict):
        return {key: _round(v, places) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return [_round(v, places) for v in value]
    return value


@dataclass(frozen=True)
class Certificate:
    """Result of `certify`.

    When certified: threshold_t is the lowest certified grid point; theta is the lowest observed
    confidence among the cases it selects (auto-handling confidence >= theta selects exactly
    the certified cases); theta_grid is the highest grid point selecting those same cases; n,
    k, coverage, upper_bound and p_value describe that set.

    When not certified: theta/theta_grid/threshold_t are None, and n, k, coverage, upper_bound,
    p_value and needed_error_free come from `best` (see `certify`).

    stopped_at is the evidence at the tested threshold where the walk stopped (None when it ran
    to t = 0.00 without a failure, or when nothing was tested).
    """

    certified: bool
    theta: float | None
    theta_grid: float | None
    threshold_t: float | None
    n: int
    k: int
    total: int
    coverage: float
    upper_bound: float | None
    p_value: float | None
    alpha: float
    delta: float
    n_min: int
    needed_error_free: int | None
    best: dict[str, Any] | None
    stopped_at: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: plain types, floats rounded to 6 places."""
        return _round(asdict(self))


def _evidence(j: int, n: int, k: int, total: int, delta: float, alpha: float) -> dict[str, Any]:
    return {
        "t": j / GRID,
        "n": n,
        "k": k,
        "coverage": n / total if total else 0.0,
        "upper_bound": cp_upper(k, n, delta),
        "p_value": binom_cdf(k, n, alpha),
    }


def _closest(
    steps: list[tuple[int, int, int, float | None]], alpha: float, delta: float, floor_n: int
) -> tuple[int, int, int, int]:
    """(j, n, k, needed) of the untested threshold closest to certifying (see `certify`)."""
    # Same (n, k) means the same selected cases: keep the highest t (first seen, top down).
    distinct: dict[tuple[int, int], int] = {}
    for j, n, k, _ in steps:
        if n > 0:
            distinct.setdefault((n, k), j)
    if not distinct:
        return GRID, 0, 0, floor_n
    ordered = sorted(
        distinct.items(),
        key=lambda item: (_needed_lower_bound(*item[0], alpha, delta, floor_n), -item[0][0]),
    )
    best_key: tuple[int, int, int, int] | None = None  # (needed, -n, -j, k): smaller is better
    for (n, k), j in ordered:
        if best_key is not None and _needed_lower_bound(n, k, alpha, delta, floor_n) > best_key[0]:
            break  # sorted by lower bound: nothing further can beat (or tie) the best
        key = (needed_error_free(n, k, alpha, delta), -n, -j, k)
        if best_key is None or key < best_key:
            best_key = key
    assert best_key is not None
    return -best_key[2], -best_key[1], best_key[3], best_key[0]


def certify(
    outcomes: Iterable[Outcome | tuple[float, str]],
    alpha: float = DEFAULT_ALPHA,
    delta: float = DEFAULT_DELTA,
) -> Certificate:
    """Certified auto-handling threshold for error budget alpha at confidence 1 - delta.

    See the module docstring for the walk. When nothing certifies, `best` is:
    - the first tested threshold, when one was tested and failed: the walk stops there, so it
      gates every lower threshold, and adding error-free cases at that confidence is the way in;
    - when no threshold reached n_min (nothing was tested): the threshold with cases (n > 0)
      that needs the fewest additional error-free cases, ties to the larger n, then the higher
      t; t = 1.00 with n = 0 when there are no cases at all.
    `needed_error_free` counts extra error-free cases with confidence >= best["t"] (and below the
    next grid point up, so no higher threshold reaches n_min first) that would make it certify.
    """
    _check_alpha(alpha)
    _check_delta(delta)
    items = _outcomes(outcomes)
    total = len(items)
    ranked = sorted(((o.confidence, o.is_error) for o in items), key=lambda x: -x[0])

    # (j, n, k, min confidence selected) for every grid point, top down.
    steps: list[tuple[int, int, int, float | None]] = []
    n = k = i = 0
    for j in range(GRID, -1, -1):
        cut = j / GRID - EPS
        while i < total and ranked[i][0] >= cut:
            k += ranked[i][1]
            n += 1
            i += 1
        steps.append((j, n, k, ranked[i - 1][0] if n else None))
    return _walk(steps, total, alpha, delta)


def _walk(
    steps: list[tuple[int, int, int, float | None]], total: int, alpha: float, delta: float
) -> Certificate:
    """The fixed-sequence test over cumulative evidence, shared by `certify` (outcomes) and
    `summarize_grid` (per-grid aggregates).

    `steps` holds (j, n, k, lowest) for j = GRID .. 0 in that order: n cases with confidence
    >= j / GRID, k errors among them, and the lowest confidence they include (None if n = 0).
    """
    floor_n = n_min(alpha, delta)
    certified_at: tuple[int, int, int, float | None] | None = None
    stop_index: int | None = None
    for idx, (_, n, k, _lowest) in enumerate(steps):
        if n < floor_n:
            continue  # (1 - alpha)^n > delta: cannot certify, and is not a test
        if binom_cdf(k, n, alpha) <= delta:
            certified_at = steps[idx]
        else:
            stop_index = idx
            break

    stopped_at = None
    if stop_index is not None:
        j, n, k, _ = steps[stop_index]
        stopped_at = _evidence(j, n, k, total, delta, alpha)

    if certified_at is not None:
        j, n, k, lowest = certified_at
        assert lowest is not None  # n >= n_min >= 1
        return Certificate(
            certified=True,
            theta=lowest,
            theta_grid=math.floor((lowest + EPS) * GRID) / GRID,
            threshold_t=j / GRID,
            n=n,
            k=k,
            total=total,
            coverage=n / total,
            upper_bound=cp_upper(k, n, delta),
            p_value=binom_cdf(k, n, alpha),
            alpha=alpha,
            delta=delta,
            n_min=floor_n,
            needed_error_free=None,
            best=None,
            stopped_at=stopped_at,
        )

    if stopped_at is not None:
        # The first tested threshold failed: it gates every lower one, so it is the evidence.
        assert stop_index is not None
        j, n, k, _ = steps[stop_index]
        needed = needed_error_free(n, k, alpha, delta)
    else:
        j, n, k, needed = _closest(steps, alpha, delta, floor_n)
    best = _evidence(j, n, k, total, delta, alpha)
    best["needed_error_free"] = needed
    return Certificate(
        certified=False,
        theta=None,
        theta_grid=None,
        threshold_t=None,
        n=n,
        k=k,
        total=total,
        coverage=best["coverage"],
        upper_bound=best["upper_bound"],
        p_value=best["p_value"],
        alpha=alpha,
        delta=delta,
        n_min=floor_n,
        needed_error_free=needed,
        best=best,
        stopped_at=stopped_at,
    )


def as_json(
    outcomes: Iterable[Outcome | tuple[float, str]],
    alpha: float = DEFAULT_ALPHA,
    delta: float = DEFAULT_DELTA,
) -> dict[str, Any]:
    """The whole calibration report for one agent/queue, JSON-ready (floats to 6 places)."""
    items = _outcomes(outcomes)
    return _report(len(items), bands(items), brier(items), certify(items, alpha, delta))


def _report(
    total: int, per_band: list[dict[str, Any]], brier_score: float | None, cert: Certificate
) -> dict[str, Any]:
    return _round(
        {
            "total": total,
            "bands": per_band,
            "reliability": _reliability_rows(per_band),
            "ece": _ece_of(per_band),
            "brier": brier_score,
            "certificate": cert.to_dict(),
        }
    )


# --- the same report from per-grid-point aggregates (computed in SQL) ----------------------
#
# A report needs no per-case data, only these aggregates per grid point g = grid_index(c):
# the cases at g select together at every threshold (t = j / GRID selects exactly the g >= j),
# band b holds grid points 10 b .. 10 b + 9 (and 100 falls in band 9), and the Brier score
# expands to (sum c^2 - 2 sum c y + sum y) / N with y = 1 for an approval (y^2 = y).
# escalation.queries.calibration_counts computes them in one GROUP BY.

GRID_ROW_FIELDS = (
    "g",  # grid point 0 .. GRID
    "n",  # cases
    "errors",  # modified + rejected
    "approved",
    "modified",
    "rejected",
    "sum_c",  # sum of confidence
    "sum_c2",  # sum of confidence^2
    "sum_c_approved",  # sum of confidence over approved cases
    "min_c",  # lowest confidence (None when n = 0)
)


def grid_index(confidence: float) -> int:
    """Grid point 0..GRID of a confidence: floor((c + EPS) * GRID), the highest threshold
    t = j / GRID that selects it (c >= t - EPS), and band_index(c) == min(9, g // 10).

    Both equalities are exact in real arithmetic; in floats they can differ only for a
    confidence within a few ulps of a grid point minus EPS (e.g. 0.929999999 itself), which
    no agent's score sits on in practice.
    """
    return math.floor((confidence + EPS) * GRID)


def grid_rows(outcomes: Iterable[Outcome | tuple[float, str]]) -> list[dict[str, Any]]:
    """The per-grid-point aggregates of `outcomes`, as calibration_counts returns them from
    SQL (non-empty grid points only, ascending): for tests and for callers holding outcomes."""
    rows: dict[int, dict[str, Any]] = {}
    for o in _outcomes(outcomes):
        g = grid_index(o.confidence)
        row = rows.setdefault(
            g,
            {
                "g": g,
                "n": 0,
                "errors": 0,
                "approved": 0,
                "modified": 0,
                "rejected": 0,
                "sum_c": 0.0,
                "sum_c2": 0.0,
                "sum_c_approved": 0.0,
                "min_c": None,
            },
        )
        row["n"] += 1
        row["errors"] += o.is_error
        row[{APPROVE: "approved", MODIFY: "modified", REJECT: "rejected"}[o.decision]] += 1
        row["sum_c"] += o.confidence
        row["sum_c2"] += o.confidence * o.confidence
        if not o.is_error:
            row["sum_c_approved"] += o.confidence
        row["min_c"] = o.confidence if row["min_c"] is None else min(row["min_c"], o.confidence)
    return [rows[g] for g in sorted(rows)]


def _grid_arrays(grid: Iterable[Any]) -> dict[str, list[Any]]:
    """Per-grid-point columns (index = g), merging repeated g; validates every row."""
    cols: dict[str, list[Any]] = {
        name: [0] * (GRID + 1) for name in ("n", "errors", "approved", "modified", "rejected")
    }
    for name in ("sum_c", "sum_c2", "sum_c_approved"):
        cols[name] = [0.0] * (GRID + 1)
    cols["min_c"] = [None] * (GRID + 1)
    for row in grid:
        g, n = int(row["g"]), int(row["n"])
        approved, modified, rejected = (int(row[x]) for x in ("approved", "modified", "rejected"))
        errors = int(row["errors"])
        if not 0 <= g <= GRID:
            raise ValueError(f"grid point must be in 0..{GRID}, got {g}")
        if min(n, approved, modified, rejected) < 0 or approved + modified + rejected != n:
            raise ValueError(f"grid point {g}: decision counts do not add up to n = {n}")
        if errors != modified + rejected:
            raise ValueError(f"grid point {g}: errors must be modified + rejected")
        if not n:
            continue
        cols["n"][g] += n
        cols["errors"][g] += errors
        cols["approved"][g] += approved
        cols["modified"][g] += modified
        cols["rejected"][g] += rejected
        for name in ("sum_c", "sum_c2", "sum_c_approved"):
            cols[name][g] += float(row[name] or 0.0)
        low = float(row["min_c"])
        cols["min_c"][g] = low if cols["min_c"][g] is None else min(cols["min_c"][g], low)
    return cols


def summarize_grid(
    grid: Iterable[Any],
    alpha: float = DEFAULT_ALPHA,
    delta: float = DEFAULT_DELTA,
) -> dict[str, Any]:
    """`as_json` computed from per-grid-point aggregates (rows with GRID_ROW_FIELDS, e.g. from
    escalation.queries.calibration_counts) instead of one outcome per case: same keys, same
    walk (`_walk`), same numbers up to float summation order (far below the 6 places shown;
    see `grid_index` for the one float edge where a case may count one grid point over)."""
    _check_alpha(alpha)
    _check_delta(delta)
    cols = _grid_arrays(grid)
    total = sum(cols["n"])

    # Cumulative evidence from the top: t = j / GRID selects the grid points g >= j, and theta
    # is the lowest confidence among them.
    steps: list[tuple[int, int, int, float | None]] = []
    n = k = 0
    lowest: float | None = None
    for j in range(GRID, -1, -1):
        n += cols["n"][j]
        k += cols["errors"][j]
        low = cols["min_c"][j]
        if low is not None:
            lowest = low if lowest is None else min(lowest, low)
        steps.append((j, n, k, lowest))

    per = GRID // BANDS
    counts = [{APPROVE: 0, MODIFY: 0, REJECT: 0} for _ in range(BANDS)]
    sums = [0.0] * BANDS
    for g in range(GRID + 1):
        b = min(BANDS - 1, g // per)
        counts[b][APPROVE] += cols["approved"][g]
        counts[b][MODIFY] += cols["modified"][g]
        counts[b][REJECT] += cols["rejected"][g]
        sums[b] += cols["sum_c"][g]

    brier_score = None
    if total:
        terms = [*cols["sum_c2"], *(-2.0 * x for x in cols["sum_c_approved"]), *cols["approved"]]
        brier_score = max(0.0, math.fsum(terms) / total)
    return _report(total, _band_rows(counts, sums), brier_score, _walk(steps, total, alpha, delta))
