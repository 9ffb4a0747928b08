"""Walk-forward splits, metrics, statistical tests and the backtest on hand-made inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from stockml import evaluation
from stockml.errors import ModelError


def test_walk_forward_splits_expand_and_purge():
    # GIVEN 200 sessions, 4 folds over the last 40%, validation 20%, purge 5
    days = pd.bdate_range("2020-01-01", periods=200)

    # WHEN split
    splits = evaluation.walk_forward_splits(
        days, n_folds=4, test_fraction=0.4, val_fraction=0.2, purge=5
    )

    # THEN the test blocks tile the last 80 sessions in order
    tested = pd.DatetimeIndex(np.concatenate([s.test for s in splits]))
    assert tested.equals(days[120:])
    for s in splits:
        # fit < val < test, each gap at least the purge, and history grows fold by fold
        assert days.get_loc(s.val[0]) - days.get_loc(s.fit[-1]) == 6
        assert days.get_loc(s.test[0]) - days.get_loc(s.val[-1]) == 6
        assert s.fit[0] == days[0]
    assert [len(s.fit) for s in splits] == sorted(len(s.fit) for s in splits)
    assert len({len(s.fit) for s in splits}) == 4


def test_walk_forward_refuses_too_little_data():
    # GIVEN 5 sessions WHEN 10 folds are asked THEN the error says why
    with pytest.raises(ModelError, match="cannot hold"):
        evaluation.walk_forward_splits(pd.bdate_range("2020-01-01", periods=5), 10, 0.3, 0.2, 1)


def test_diebold_mariano_sees_a_clearly_better_forecast():
    # GIVEN losses of a forecast with half the error variance of the baseline's
    rng = np.random.default_rng(0)
    y = rng.normal(size=500)
    better = (0.5 * rng.normal(size=500)) ** 2
    base = y**2

    # WHEN tested both ways
    stat, p = evaluation.diebold_mariano(better, base, horizon=1)
    flipped, p_flipped = evaluation.diebold_mariano(base, better, horizon=1)

    # THEN the better one has a negative statistic, significant, and the test is symmetric
    assert stat < -5 and p < 1e-6
    assert flipped == pytest.approx(-stat) and p_flipped == pytest.approx(p)


def test_diebold_mariano_at_horizon_one_is_a_corrected_t_test():
    # GIVEN a loss differential with no autocorrelation correction (h = 1)
    rng = np.random.default_rng(1)
    d = rng.normal(0.1, 1.0, size=80)

    # WHEN tested
    stat, _ = evaluation.diebold_mariano(d, np.zeros_like(d), horizon=1)

    # THEN HLN's factor sqrt((n-1)/n) undoes the population variance: it is the t-test's t
    assert stat == pytest.approx(stats.ttest_1samp(d, 0.0).statistic)


def test_diebold_mariano_has_no_answer_for_identical_forecasts():
    losses = np.arange(10.0)
    assert evaluation.diebold_mariano(losses, losses, horizon=2) == (None, None)


def test_directional_accuracy_skips_flat_rows_and_tests_against_a_coin():
    # GIVEN four directional calls, three right, and one flat forecast
    pred = np.array([0.01, -0.02, 0.03, 0.01, 0.0])
    y = np.array([0.02, -0.01, -0.01, 0.05, 0.03])

    # WHEN scored
    accuracy, pvalue, n = evaluation.directional(pred, y)

    # THEN 3/4, with P(X >= 3 | n=4, p=0.5) = 5/16
    assert (accuracy, n) == (0.75, 4)
    assert pvalue == pytest.approx(5 / 16)


def test_information_coefficient_is_rank_based_and_none_for_constants():
    y = np.array([0.01, -0.02, 0.03, 0.0, 0.02])
    assert evaluation.information_coefficient(np.exp(y * 50), y) == pytest.approx(1.0)
    assert evaluation.information_coefficient(np.zeros(5), y) is None


def test_backtest_rewards_foresight_and_charges_costs():
    # GIVEN one symbol's daily returns and a signal that knows tomorrow's sign
    rng = np.random.default_rng(2)
    y = rng.normal(0.0, 0.01, size=252)
    dates = pd.bdate_range("2021-01-01", periods=252).to_numpy()
    symbols = np.array(["X"] * 252)

    # WHEN backtested without and with costs, and with an always-flat signal
    free = evaluation.backtest(y, y, symbols, dates, cost_bps=0)
    costly = evaluation.backtest(y, y, symbols, dates, cost_bps=20)
    flat = evaluation.backtest(np.zeros(252), y, symbols, dates, cost_bps=20)

    # THEN foresight beats buy-and-hold, costs cut the return, and flat earns nothing
    assert free["strategy"]["annual_return"] > free["buy_and_hold"]["annual_return"]
    assert free["strategy"]["max_drawdown"] >= free["buy_and_hold"]["max_drawdown"]
    assert costly["strategy"]["annual_return"] < free["strategy"]["annual_return"]
    assert costly["trades"] == free["trades"] > 0
    assert flat["strategy"]["annual_return"] == 0.0 and flat["exposure"] == 0.0
    # buy-and-hold's annual return is the compounded simple return over one year
    assert free["buy_and_hold"]["annual_return"] == pytest.approx(np.prod(np.expm1(y) + 1) - 1)


def test_conformal_band_covers_its_level_on_validation_and_fresh_rows():
    # GIVEN residuals of a forecast on validation and on fresh rows from the same process
    rng = np.random.default_rng(3)
    pred_val, pred_new = np.zeros((2000, 2)), np.zeros((2000, 2))
    y_val, y_new = rng.normal(0, 0.01, (2000, 2)), rng.normal(0, 0.01, (2000, 2))

    # WHEN a 90% band is fitted on validation
    band = evaluation.conformal_intervals(y_val, pred_val, level=0.9)

    # THEN it covers about 90% of validation and of the fresh rows, per horizon
    assert all(c >= 0.9 for c in evaluation.interval_coverage(y_val, pred_val, band))
    assert all(abs(c - 0.9) < 0.03 for c in evaluation.interval_coverage(y_new, pred_new, band))


def test_evaluate_predictions_scores_every_model_pooled_and_per_symbol():
    # GIVEN two symbols, a useful forecast and the naive one
    rng = np.random.default_rng(4)
    n = 300
    y = rng.normal(0, 0.01, (n, 2))
    symbols = np.array(["A", "B"] * (n // 2))
    dates = np.repeat(pd.bdate_range("2020-01-01", periods=n // 2).to_numpy(), 2)
    preds = {"good": y + rng.normal(0, 0.005, y.shape), "naive": np.zeros_like(y)}

    # WHEN evaluated and serialised
    report = evaluation.json_safe(
        evaluation.evaluate_predictions(preds, y, symbols, dates, cost_bps=5)
    )
    text = json.dumps(report, allow_nan=False)

    # THEN the useful forecast beats naive everywhere and the JSON is strict
    assert json.loads(text)["good"]["pooled"]["rmse_ratio_vs_naive"] < 0.6
    for symbol in ("A", "B"):
        block = report["good"]["per_symbol"][symbol]
        assert block["n"] == n // 2
        assert block["dm_stat"] < 0 and block["dm_pvalue"] < 0.01
        assert block["directional_accuracy"] > 0.6
    assert report["naive"]["pooled"]["rmse_ratio_vs_naive"] == 1.0
    assert set(report["good"]["pooled"]["by_horizon"]) == {"1", "2"}
