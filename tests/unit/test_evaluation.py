"""Walk-forward splits, metrics, statistical tests, intervals and the backtest, each checked
against an independent oracle: scipy, statsmodels, or values worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import optimize, stats

from stockml import evaluation
from stockml.errors import ModelError
from stockml.evaluation import Forecasts
from stockml.models.ensemble import simplex_weights

# ----------------------------------------------------------------------------------- splits


def test_walk_forward_splits_expand_and_purge_between_every_slice():
    # GIVEN 300 sessions, 4 folds over the last 40%, validation 20%, calibration 20%, purge 5
    days = pd.bdate_range("2020-01-01", periods=300)

    # WHEN split
    splits = evaluation.walk_forward_splits(
        days, n_folds=4, test_fraction=0.4, val_fraction=0.2, calibration_fraction=0.2, purge=5
    )

    # THEN the test blocks tile the last 120 sessions in order
    tested = pd.DatetimeIndex(np.concatenate([s.test for s in splits]))
    assert tested.equals(days[180:])
    for s in splits:
        # fit < val < cal < test, each gap exactly the purge (+1 for the next index)
        assert days.get_loc(s.val[0]) - days.get_loc(s.fit[-1]) == 6
        assert days.get_loc(s.cal[0]) - days.get_loc(s.val[-1]) == 6
        assert days.get_loc(s.test[0]) - days.get_loc(s.cal[-1]) == 6
        # the refit learns from everything before the test block less the purge
        assert s.history[0] == days[0] and s.history[-1] == s.cal[-1]
        assert len(s.cal) == int(len(s.history) * 0.2)
    assert [len(s.fit) for s in splits] == sorted(len(s.fit) for s in splits)


def test_walk_forward_refuses_too_little_data():
    # GIVEN 5 sessions WHEN 10 folds are asked THEN the error says why
    with pytest.raises(ModelError, match="cannot hold"):
        evaluation.walk_forward_splits(
            pd.bdate_range("2020-01-01", periods=5), 10, 0.3, 0.2, 0.2, 1
        )


# ----------------------------------------------------------------------- Diebold-Mariano


def test_diebold_mariano_at_horizon_one_is_a_t_test_both_ways():
    # GIVEN a loss differential (h = 1: no autocovariance term)
    rng = np.random.default_rng(1)
    d = rng.normal(-0.1, 1.0, size=80)

    # WHEN tested two-sided and one-sided (model loss lower)
    stat, p_two = evaluation.diebold_mariano(d, np.zeros_like(d), horizon=1)
    _, p_less = evaluation.diebold_mariano(d, np.zeros_like(d), horizon=1, alternative="less")

    # THEN HLN's factor sqrt((n-1)/n) undoes the population variance: scipy's t-test
    assert stat == pytest.approx(stats.ttest_1samp(d, 0.0).statistic)
    assert p_two == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue)
    assert p_less == pytest.approx(stats.ttest_1samp(d, 0.0, alternative="less").pvalue)


def test_diebold_mariano_with_overlap_matches_the_hand_computed_hln_statistic():
    # GIVEN d = [0, 1, 3, 4, 2, 2] at h = 2: mean 2, centred [-2, -1, 1, 2, 0, 0]
    # gamma0 = 10/6, gamma1 = 3/6, long-run variance 10/6 + 2 * 3/6 = 16/6
    # DM = 2 / sqrt((16/6) / 6) = 3; HLN factor (n + 1 - 2h + h(h-1)/n) / n = 5/9
    d = np.array([0.0, 1.0, 3.0, 4.0, 2.0, 2.0])

    # WHEN tested
    stat, p = evaluation.diebold_mariano(d, np.zeros(6), horizon=2)

    # THEN the statistic is 3 * sqrt(5/9) = sqrt(5), compared with t(5)
    assert stat == pytest.approx(math.sqrt(5.0))
    assert p == pytest.approx(2 * stats.t.sf(math.sqrt(5.0), df=5))


def test_diebold_mariano_sees_a_clearly_better_forecast_and_is_symmetric():
    rng = np.random.default_rng(0)
    y = rng.normal(size=500)
    better, base = (0.5 * rng.normal(size=500)) ** 2, y**2
    stat, p = evaluation.diebold_mariano(better, base, horizon=1)
    flipped, p_flipped = evaluation.diebold_mariano(base, better, horizon=1)
    assert stat < -5 and p < 1e-6
    assert flipped == pytest.approx(-stat) and p_flipped == pytest.approx(p)
    # one-sided: significant when the model is better, near 1 when it is worse
    assert evaluation.diebold_mariano(better, base, 1, "less")[1] < 1e-6
    assert evaluation.diebold_mariano(base, better, 1, "less")[1] > 1 - 1e-6


def test_diebold_mariano_has_no_answer_for_identical_forecasts():
    losses = np.arange(10.0)
    assert evaluation.diebold_mariano(losses, losses, horizon=2) == (None, None)


# ------------------------------------------------------------------ directional accuracy


def test_newey_west_rule_of_thumb():
    # floor(4 (n/100)^(2/9)): 4 at n = 100, 6 at n = 735 (4 * 7.35^0.2222 = 6.23)
    assert evaluation.newey_west_lags(100) == 4
    assert evaluation.newey_west_lags(735) == 6


def test_hac_variance_equals_statsmodels_newey_west():
    rng = np.random.default_rng(5)
    x = np.convolve(rng.normal(size=400), np.ones(3), mode="same")  # MA(2): autocorrelated
    for lags in (0, 2, 6):
        fit = sm.OLS(x, np.ones(len(x))).fit(
            cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": False}
        )
        # statsmodels' variance of the mean is the long-run variance / n
        assert evaluation.hac_variance(x, lags) / len(x) == pytest.approx(fit.bse[0] ** 2)


def test_directional_accuracy_counts_hits_and_always_long_on_the_same_rows():
    # GIVEN four directional calls, three right, one flat forecast (no direction) and two
    # up days among the four counted rows
    pred = np.array([0.01, -0.02, 0.03, 0.01, 0.0])
    y = np.array([0.02, -0.01, -0.01, 0.05, 0.03])
    dates = pd.bdate_range("2021-01-01", periods=5).to_numpy()

    # WHEN scored
    out = evaluation.directional_test(pred, y, dates, horizon=1)

    # THEN 3/4 for the model and 2/4 for always-long, on the same four rows
    assert out["directional_accuracy"] == 0.75
    assert out["directional_accuracy_always_long"] == 0.5
    assert out["n_directional"] == 4


def test_directional_test_pools_symbols_per_date_and_matches_statsmodels_hac():
    # GIVEN two symbols over 300 sessions, a forecast with a slight edge, h = 5 overlap
    rng = np.random.default_rng(7)
    days = pd.bdate_range("2020-01-01", periods=300).to_numpy()
    dates = np.repeat(days, 2)
    y = rng.normal(0.0005, 0.01, size=600)
    pred = y + rng.normal(0, 0.02, size=600)

    # WHEN tested against always-long
    out = evaluation.directional_test(pred, y, dates, horizon=5)

    # THEN the p-value is statsmodels' one-sided HAC test of mean(d) > 0, where d is the
    # per-date average of hit(model) - hit(always long) and the lags are max(h-1, NW rule)
    hit = (np.sign(pred) == np.sign(y)).astype(float) - (y > 0).astype(float)
    d = pd.Series(hit).groupby(dates).mean().to_numpy()
    lags = max(4, int(np.floor(4 * (len(d) / 100) ** (2 / 9))))
    fit = sm.OLS(d, np.ones(len(d))).fit(
        cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": False}
    )
    assert out["directional_pvalue"] == pytest.approx(stats.norm.sf(fit.tvalues[0]))
    assert out["directional_accuracy"] == pytest.approx(np.mean(np.sign(pred) == np.sign(y)))


def test_information_coefficient_is_rank_based_and_none_for_constants():
    y = np.array([0.01, -0.02, 0.03, 0.0, 0.02])
    assert evaluation.information_coefficient(np.exp(y * 50), y) == pytest.approx(1.0)
    assert evaluation.information_coefficient(np.zeros(5), y) is None


# ------------------------------------------------------------------------------ intervals


def test_conformal_band_takes_the_finite_sample_order_statistics():
    # GIVEN 39 residuals 1..39 (forecast 0, unit scale) and a 90% band: each tail 5%
    y = np.arange(1.0, 40.0)[:, None]
    pred, scale = np.zeros_like(y), np.ones(39)

    # WHEN calibrated
    band = evaluation.conformal_band(y, pred, scale, level=0.9)

    # THEN lo is the floor(40 * 0.05) = 2nd smallest, hi the ceil(40 * 0.95) = 38th
    assert band["lo"] == [2.0] and band["hi"] == [38.0]
    # with residuals scaled: the bounds are in units of the scale
    band = evaluation.conformal_band(y * 0.01, pred, np.full(39, 0.01), level=0.9)
    assert band["lo"] == [pytest.approx(2.0)] and band["hi"] == [pytest.approx(38.0)]


def test_conformal_band_refuses_too_few_rows():
    # 18 rows cannot hold a 5% tail: floor(19 * 0.05) = 0
    y = np.arange(18.0)[:, None]
    with pytest.raises(ModelError, match="too few"):
        evaluation.conformal_band(y, np.zeros_like(y), np.ones(18), level=0.9)


def test_volatility_scaled_band_covers_its_level_in_calm_and_stormy_regimes():
    # GIVEN returns whose volatility switches between 0.5% and 3%, the volatility known at
    # each row (as a volatility feature is), calibration rows drawn from both regimes
    rng = np.random.default_rng(3)

    def rows(n: int, vol: float | None) -> tuple[np.ndarray, np.ndarray]:
        sigma = rng.choice([0.005, 0.03], size=n) if vol is None else np.full(n, vol)
        return rng.standard_t(5, size=(n, 1)) * sigma[:, None], sigma

    y_cal, s_cal = rows(4000, None)
    zeros = np.zeros_like(y_cal)
    scaled = evaluation.conformal_band(y_cal, zeros, s_cal, level=0.9)
    fixed = evaluation.conformal_band(y_cal, zeros, np.ones(len(y_cal)), level=0.9)

    # WHEN each band is applied to a calm and to a stormy period
    for vol in (0.005, 0.03):
        y, s = rows(4000, vol)
        lo, hi = evaluation.band_bounds(np.zeros_like(y), s, scaled)
        lo_f, hi_f = evaluation.band_bounds(np.zeros_like(y), np.ones(len(y)), fixed)
        covered = float(np.mean((y >= lo) & (y <= hi)))
        covered_fixed = float(np.mean((y >= lo_f) & (y <= hi_f)))
        # THEN the scaled band covers ~90% in both, the fixed band in neither
        assert abs(covered - 0.9) < 0.02
        assert abs(covered_fixed - 0.9) > 0.05
        assert evaluation.interval_coverage(y, lo, hi) == [pytest.approx(covered)]


# ----------------------------------------------------------------------- simplex weights


def _slsqp(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    m = p.shape[1]
    res = optimize.minimize(
        lambda w: float(np.sum((y - p @ w) ** 2)) * 1e4,
        np.full(m, 1.0 / m),
        method="SLSQP",
        bounds=[(0.0, 1.0)] * m,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
        options={"ftol": 1e-14, "maxiter": 500},
    )
    return res.x


@pytest.mark.parametrize("seed", range(6))
def test_simplex_weights_match_scipy_slsqp(seed):
    # GIVEN four correlated forecasters, one of them anti-correlated with the target
    rng = np.random.default_rng(seed)
    y = rng.normal(size=300) * 0.01
    p = np.column_stack(
        [
            y + rng.normal(size=300) * 0.01,
            0.5 * y + rng.normal(size=300) * 0.005,
            -y + rng.normal(size=300) * 0.01,
            np.zeros(300),
        ]
    )

    # WHEN fitted exactly and by a general constrained optimiser
    w = simplex_weights(p, y)
    oracle = _slsqp(p, y)

    # THEN both are on the simplex and reach the same minimum
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0)
    loss = lambda v: float(np.sum((y - p @ v) ** 2))  # noqa: E731
    assert loss(w) <= loss(oracle) + 1e-12
    np.testing.assert_allclose(w, oracle, atol=1e-4)


def test_simplex_weights_of_two_members_are_the_clipped_projection():
    # GIVEN two members: w1 = clip(<p1 - p2, y - p2> / |p1 - p2|^2, 0, 1) by hand
    rng = np.random.default_rng(9)
    y = rng.normal(size=200)
    p1, p2 = y + rng.normal(size=200), rng.normal(size=200)
    expected = np.clip((p1 - p2) @ (y - p2) / ((p1 - p2) @ (p1 - p2)), 0, 1)

    # THEN
    np.testing.assert_allclose(
        simplex_weights(np.column_stack([p1, p2]), y), [expected, 1 - expected]
    )
    # a member pointing the wrong way gets no weight at all
    np.testing.assert_allclose(simplex_weights(np.column_stack([y, -y]), y), [1.0, 0.0])


# ------------------------------------------------------------------------------ backtest


def test_backtest_rewards_foresight_and_charges_costs():
    rng = np.random.default_rng(2)
    y = rng.normal(0.0, 0.01, size=252)
    dates = pd.bdate_range("2021-01-01", periods=252).to_numpy()
    symbols = np.array(["X"] * 252)

    free = evaluation.backtest(y, y, symbols, dates, cost_bps=0, execution_lag=0)
    costly = evaluation.backtest(y, y, symbols, dates, cost_bps=20, execution_lag=0)
    flat = evaluation.backtest(np.zeros(252), y, symbols, dates, cost_bps=20)

    assert free["strategy"]["annual_return"] > free["buy_and_hold"]["annual_return"]
    assert costly["strategy"]["annual_return"] < free["strategy"]["annual_return"]
    assert costly["trades"] == free["trades"] > 0
    assert flat["strategy"]["annual_return"] == 0.0 and flat["exposure"] == 0.0
    assert free["buy_and_hold"]["annual_return"] == pytest.approx(np.prod(np.expm1(y) + 1) - 1)
    assert free["execution_lag"] == 0


def test_backtest_execution_lag_trades_the_signal_one_session_later():
    # GIVEN one symbol, a signal known at each close, and a hand-run lag-1 strategy
    rng = np.random.default_rng(4)
    y = rng.normal(0.0, 0.01, size=100)
    signal = rng.normal(size=100)
    dates = pd.bdate_range("2021-01-01", periods=100).to_numpy()
    symbols = np.array(["X"] * 100)
    position = np.r_[0.0, (signal[:-1] > 0).astype(float)]
    turnover = np.abs(np.diff(np.r_[0.0, position]))
    daily = position * np.expm1(y) - turnover * 10 / 1e4
    expected = np.prod(1 + daily) ** (252 / 100) - 1

    # WHEN backtested with lag 1
    out = evaluation.backtest(signal, y, symbols, dates, cost_bps=10, execution_lag=1)

    # THEN it equals the hand-run strategy, and says which lag it used
    assert out["strategy"]["annual_return"] == pytest.approx(expected)
    assert out["execution_lag"] == 1 and out["trades"] == int(turnover.sum())


# ------------------------------------------------------------------------------ scoring


def _forecasts(n_days: int = 300, seed: int = 4) -> tuple[Forecasts, np.ndarray]:
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2020-01-01", periods=n_days).to_numpy()
    dates, symbols = np.repeat(days, 2), np.tile(np.array(["A", "B"]), n_days)
    y = rng.normal(0.001, 0.01, (2 * n_days, 2))
    preds = {
        "good": y + rng.normal(0, 0.005, y.shape),
        "naive": np.zeros_like(y),
        "drift": np.full_like(y, 0.001),
    }
    return Forecasts(symbols, dates, preds), y


def test_score_forecasts_tests_each_model_against_the_better_baseline():
    # GIVEN two symbols, a useful forecast, naive and drift (drift is right about the mean)
    forecasts, y = _forecasts()

    # WHEN scored and serialised
    report = evaluation.json_safe(evaluation.score_forecasts(forecasts, y, cost_bps=5))
    text = json.dumps(report, allow_nan=False)

    # THEN drift is the better baseline, and the useful forecast beats it significantly
    good = json.loads(text)["good"]["pooled"]
    assert good["best_baseline"] == "drift"
    assert good["rmse_ratio_vs_naive"] < 0.6 and good["rmse_ratio_vs_best_baseline"] < 0.6
    # the one-sided p is scipy's t-test on the per-session loss differential (h = 1)
    d = (
        pd.Series((forecasts.predictions["good"][:, 0] - y[:, 0]) ** 2)
        .groupby(forecasts.dates)
        .mean()
        - pd.Series((0.001 - y[:, 0]) ** 2).groupby(forecasts.dates).mean()
    )
    assert good["dm_pvalue_vs_best_baseline"] == pytest.approx(
        stats.ttest_1samp(d, 0.0, alternative="less").pvalue
    )
    assert good["n_sessions"] == 300 and good["n"] == 600
    for symbol in ("A", "B"):
        block = report["good"]["per_symbol"][symbol]
        assert block["n"] == 300 and block["dm_pvalue_vs_best_baseline"] < 0.01
    # a baseline is not tested against itself
    assert report["drift"]["pooled"]["dm_pvalue_vs_best_baseline"] is None
    assert report["naive"]["pooled"]["rmse_ratio_vs_naive"] == 1.0
    assert set(report["good"]["pooled"]["by_horizon"]) == {"1", "2"}


def test_score_forecasts_reports_band_coverage_and_width():
    # GIVEN bands of fixed half-width 0.01 around the useful forecast
    forecasts, y = _forecasts()
    pred = forecasts.predictions["good"]
    banded = Forecasts(
        forecasts.symbols,
        forecasts.dates,
        forecasts.predictions,
        {"good": pred - 0.01},
        {"good": pred + 0.01},
    )

    # WHEN scored
    block = evaluation.score_forecasts(banded, y, cost_bps=5)["good"]["pooled"]

    # THEN coverage is the share of outcomes inside, by counting, and the width 0.02
    inside = np.abs(y - pred) <= 0.01
    assert block["interval_coverage"] == pytest.approx(inside[:, 0].mean())
    assert block["by_horizon"]["2"]["interval_coverage"] == pytest.approx(inside[:, 1].mean())
    assert block["interval_width"] == pytest.approx(0.02)


def test_forecasts_join_realised_outcomes_by_symbol_and_date():
    # GIVEN forecasts for three rows and outcomes known for two of them
    forecasts = Forecasts(
        np.array(["A", "A", "B"]),
        pd.to_datetime(["2021-01-04", "2021-01-05", "2021-01-04"]).to_numpy(),
        {"m": np.array([[0.1], [0.2], [0.3]])},
    )
    outcomes = pd.DataFrame(
        {
            "symbol": ["B", "A", "A"],
            "date": pd.to_datetime(["2021-01-04", "2021-01-04", "2021-01-05"]),
            "target_1": [0.03, 0.01, np.nan],
        }
    )

    # WHEN joined
    joined, y = forecasts.join(outcomes, ["target_1"])

    # THEN the rows without an outcome drop out and the rest line up
    assert joined.symbols.tolist() == ["A", "B"]
    np.testing.assert_array_equal(y[:, 0], [0.01, 0.03])
    np.testing.assert_array_equal(joined.predictions["m"][:, 0], [0.1, 0.3])


def test_paired_test_flags_a_clearly_worse_challenger_only():
    rng = np.random.default_rng(8)
    y = rng.normal(0, 0.01, 400)
    dates = pd.bdate_range("2020-01-01", periods=400).to_numpy()
    champion = y + rng.normal(0, 0.003, 400)
    worse = y + rng.normal(0, 0.01, 400)
    assert evaluation.paired_test(worse, champion, y, dates, 1)["pvalue_challenger_worse"] < 1e-6
    assert evaluation.paired_test(champion, worse, y, dates, 1)["pvalue_challenger_worse"] > 0.99
