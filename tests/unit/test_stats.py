"""stockml.stats: the scoring's distribution functions, against SciPy's (the reference)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from stockml import stats


@pytest.mark.parametrize("df", [1, 2, 3, 5, 10, 29, 99, 500, 2000, 7000])
def test_student_t_tails_match_scipy(df: int) -> None:
    # GIVEN statistics across the body and the tails, and the values DM tests produce
    rng = np.random.default_rng(df)
    values = np.r_[rng.normal(0, 3, 300), [0.0, 1e-9, -1e-9, 8.0, -8.0, 40.0, -40.0]]
    for t in values:
        # THEN the CDF matches in absolute terms and the upper tail in relative terms
        assert stats.t_cdf(t, df) == pytest.approx(scipy_stats.t.cdf(t, df), abs=1e-9)
        reference = scipy_stats.t.sf(abs(t), df)
        assert stats.t_sf(abs(t), df) == pytest.approx(reference, rel=1e-9, abs=1e-300)


def test_student_t_with_one_degree_of_freedom_is_cauchy() -> None:
    # an exact oracle: the Cauchy CDF is 1/2 + atan(t) / pi
    for t in (-40.0, -1.0, -1e-9, 0.0, 1e-9, 0.5, 3.0):
        assert stats.t_cdf(t, 1) == pytest.approx(0.5 + np.arctan(t) / np.pi, abs=1e-15)


def test_normal_upper_tail_matches_scipy() -> None:
    for z in np.linspace(-9, 9, 721):
        assert stats.norm_sf(z) == pytest.approx(scipy_stats.norm.sf(z), rel=1e-12, abs=1e-300)


def test_spearman_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(7)
    for _ in range(100):
        # GIVEN heavy ties on one side (e.g. a forecast taking few values)
        x = rng.integers(0, 5, 60).astype(float)
        y = rng.normal(size=60)
        assert stats.spearman(x, y) == pytest.approx(
            scipy_stats.spearmanr(x, y).statistic, abs=1e-12
        )


def test_spearman_of_a_constant_is_nan() -> None:
    assert np.isnan(stats.spearman(np.ones(5), np.arange(5.0)))


def test_average_ranks() -> None:
    assert stats.rank_average(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
