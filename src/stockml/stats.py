"""The few distribution functions the scoring needs, in numpy and the standard library.

``stockml.evaluation`` scores every forecast: the walk-forward, forward tests of a published
bundle and the monitor's live metrics. The monitor runs as a Lambda whose zip sits beside the
AWS SDK for pandas layer under Lambda's 250 MB limit, where SciPy (~140 MB installed) does not
fit, so the scoring needs only these three functions, checked against SciPy in the tests
(``tests/unit/test_stats.py``; agreement to ~1e-12):

- :func:`t_cdf` / :func:`t_sf`: Student's t distribution (Diebold-Mariano p-values), through
  the regularised incomplete beta function (continued fraction, modified Lentz);
- :func:`norm_sf`: the standard normal's upper tail (``erfc``);
- :func:`spearman`: Spearman's rank correlation (average ranks for ties).
"""

from __future__ import annotations

import math

import numpy as np

_MAX_ITERATIONS = 1000
_EPS = 1e-16
_TINY = 1e-300


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz's method)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_ITERATIONS + 1):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            step = d * c
            h *= step
        if abs(step - 1.0) < _EPS:
            return h
    return h  # pragma: no cover - converges in O(sqrt(max(a, b))) steps


def betainc(a: float, b: float, x: float, y: float | None = None) -> float:
    """The regularised incomplete beta function ``I_x(a, b)`` for ``a, b > 0``, ``0 <= x <= 1``.

    ``y`` is ``1 - x`` when the caller knows it more precisely than ``1 - x`` rounds to.
    """
    y = 1.0 - x if y is None else y
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x)
    front = math.exp(log_front + b * math.log(y))
    # the fraction converges fast on this side of the mean; the other side by symmetry
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, y) / b


def t_sf(t: float, df: float) -> float:
    """``P(T > t)`` for Student's t with ``df`` degrees of freedom."""
    if math.isnan(t):
        return math.nan
    # x = df / (df + t^2) and 1 - x = t^2 / (df + t^2), each without cancellation
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t), t * t / (df + t * t))
    return tail if t > 0 else 1.0 - tail


def t_cdf(t: float, df: float) -> float:
    """``P(T <= t)`` for Student's t with ``df`` degrees of freedom."""
    return t_sf(-t, df)


def norm_sf(z: float) -> float:
    """``P(Z > z)`` for the standard normal."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def rank_average(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values``, ties sharing the average of their ranks."""
    x = np.asarray(values)
    order = np.argsort(x, kind="mergesort")
    ordered = x[order]
    # the first position of each run of equal values, and one past the last
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(x)]
    average = (starts + ends + 1) / 2.0  # the mean of ranks start+1 .. end
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of ``a`` and ``b`` (NaN when either is constant)."""
    ra, rb = rank_average(a), rank_average(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denominator = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / denominator if denominator > 0 else math.nan
