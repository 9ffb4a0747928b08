"""Cross-sectional figures (stockml.ranking) against independent oracles: scipy's Spearman,
statsmodels' HAC regression, and portfolios computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from stockml import ranking
from stockml.bundle import score_to_return
from stockml.evaluation import newey_west_lags


def _panel(n_dates: int, n_symbols: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    dates = np.repeat(pd.bdate_range("2020-01-01", periods=n_dates).to_numpy(), n_symbols)
    symbols = np.tile(np.array([f"S{i}" for i in range(n_symbols)]), n_dates)
    score = rng.normal(size=n_dates * n_symbols)
    y = 0.3 * score + rng.normal(size=n_dates * n_symbols)
    return dates, symbols, score, y


def test_daily_rank_ic_is_scipys_spearman_per_date_with_ties_gaps_and_few_names():
    # GIVEN scores with ties, missing outcomes and a date with too few names
    dates, symbols, score, y = _panel(6, 12)
    score = np.round(score, 1)  # ties
    y[[3, 15, 40]] = np.nan
    keep = ~((dates == dates[-1]) & (np.arange(len(dates)) % 12 >= 4))  # 4 names on the last date
    dates, symbols, score, y = dates[keep], symbols[keep], score[keep], y[keep]
    sections = ranking.CrossSections.of(dates, symbols)

    # WHEN the daily rank IC is computed
    ic = ranking.daily_rank_ic(sections.grid(score), sections.grid(y), min_names=5)

    # THEN each date's value is scipy's Spearman rho over its rows with both values
    for d, day in enumerate(sections.dates):
        rows = (dates == day) & np.isfinite(y)
        if rows.sum() < 5:
            assert np.isnan(ic[d])
        else:
            assert ic[d] == pytest.approx(
                stats.spearmanr(score[rows], y[rows]).statistic, abs=1e-12
            )


def test_ic_summary_t_is_the_hac_t_of_statsmodels():
    rng = np.random.default_rng(3)
    ic = 0.02 + np.convolve(rng.normal(0, 0.1, 300), [1, 0.5, 0.25], mode="same")
    for horizon in (1, 5):
        out = ranking.ic_summary(ic, horizon)
        lags = max(horizon - 1, newey_west_lags(len(ic)))
        fit = sm.OLS(ic, np.ones((len(ic), 1))).fit(
            cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": False}
        )
        assert out["rank_ic_t"] == pytest.approx(fit.tvalues[0], rel=1e-9)
        assert out["rank_ic"] == pytest.approx(ic.mean())
        assert out["icir"] == pytest.approx(ic.mean() / ic.std(ddof=1))
        assert out["hit_rate"] == pytest.approx((ic > 0).mean())


def test_long_short_by_hand_with_lag_costs_and_turnover():
    # GIVEN 3 dates x 4 symbols: scores and next-session returns
    score = np.array([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]])
    ret = np.array([[0.01, 0.0, 0.0, -0.01], [0.02, 0.0, 0.0, 0.03], [0.0, 0.01, 0.02, 0.0]])

    # WHEN the top/bottom quarter (one name each) is traded at lag 0 and lag 1, 10 bps a side
    lag0 = ranking.long_short(score, ret, 0.25, 0, 10.0, min_names=4)
    lag1 = ranking.long_short(score, ret, 0.25, 1, 10.0, min_names=4)

    # THEN by hand: lag 0 holds S0/-S3, then S3/-S0, then S0/-S3
    assert lag0.gross == pytest.approx([0.01 + 0.01, 0.03 - 0.02, 0.0 - 0.0])
    assert lag0.traded == pytest.approx([2.0, 4.0, 4.0])
    assert lag0.net == pytest.approx(lag0.gross - lag0.traded * 10e-4)
    # lag 1: no position on the first date, then yesterday's picks
    assert lag1.gross == pytest.approx([0.0, 0.02 - 0.03, 0.0 - 0.0])
    assert lag1.traded == pytest.approx([0.0, 2.0, 4.0])
    assert lag0.summary()["turnover"] == pytest.approx(np.mean([2.0, 4.0, 4.0]) / 2)


def test_a_name_without_an_outcome_leaves_the_book_and_a_thin_date_trades_nothing():
    score = np.array([[4.0, 3.0, 2.0, 1.0, 0.0], [4.0, 3.0, 2.0, 1.0, np.nan]])
    ret = np.array([[np.nan, 0.01, 0.0, 0.0, -0.02], [0.01, 0.0, 0.0, 0.0, 0.0]])
    book = ranking.long_short(score, ret, 0.2, 0, 0.0, min_names=5)
    # date 0: S0 has no outcome, so S1 is the best of 4 eligible (< 5 names): no position
    assert book.gross == pytest.approx([0.0, 0.0])
    book = ranking.long_short(score, ret, 0.25, 0, 0.0, min_names=4)
    # date 0: S1 long, S4 short; date 1: S0 long, S3 short (S4 has no score)
    assert book.gross == pytest.approx([0.01 + 0.02, 0.01 - 0.0])


def test_top_k_against_the_equal_weight_universe_by_hand():
    score = np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    ret = np.array([[0.04, 0.02, 0.0, -0.02], [0.01, 0.01, 0.03, 0.05]])
    out = ranking.top_k(score, ret, 2, 0, 0.0, min_names=4)
    portfolio = np.array([0.03, 0.04])
    benchmark = ret.mean(axis=1)
    assert out["annual_return_net"] == pytest.approx(np.prod(1 + portfolio) ** (252 / 2) - 1)
    assert out["benchmark_annual_return"] == pytest.approx(np.prod(1 + benchmark) ** (252 / 2) - 1)
    active = portfolio - benchmark
    assert out["information_ratio"] == pytest.approx(active.mean() / active.std(ddof=1) * 252**0.5)
    assert out["turnover"] == pytest.approx(np.mean([1.0, 2.0]) / 2)


def test_universe_labels_rank_and_excess_per_date():
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime(["2020-01-02"] * 4 + ["2020-01-03"] * 3),
            "target_1": [0.03, -0.01, 0.03, np.nan, 0.0, 0.02, -0.02],
        }
    )
    rank = ranking.universe_labels(frame, ["target_1"], "rank")[:, 0]
    expected_day1 = (stats.rankdata([0.03, -0.01, 0.03]) - 1) / 2 - 0.5
    assert rank[:3] == pytest.approx(expected_day1)
    assert np.isnan(rank[3])
    assert rank[4:] == pytest.approx([0.0, 0.5, -0.5])
    excess = ranking.universe_labels(frame, ["target_1"], "excess")[:, 0]
    assert excess[:3] == pytest.approx(np.array([0.03, -0.01, 0.03]) - 0.05 / 3)
    assert excess[4:] == pytest.approx([0.0, 0.02, -0.02])


def test_score_map_is_the_demeaned_slope_and_never_reverses_a_ranking():
    # GIVEN scores whose demeaned values predict the excess return with slope 0.02
    dates, symbols, score, _y = _panel(50, 20, seed=5)
    rng = np.random.default_rng(1)
    market = np.repeat(rng.normal(0, 0.01, 50), 20)
    y = market + 0.02 * score + rng.normal(0, 0.001, len(score))
    s = np.column_stack([score, -score])
    out = ranking.fit_score_map({"m": s}, np.column_stack([y, y]), dates)["m"]

    # THEN beta is OLS of the demeaned y on the demeaned score (within-date regression)
    frame = pd.DataFrame({"d": dates, "s": score, "y": y})
    within = frame[["s", "y"]] - frame.groupby("d")[["s", "y"]].transform("mean")
    slope = sm.OLS(within["y"], within["s"]).fit().params.iloc[0]
    assert out["beta"][0] == pytest.approx(slope, rel=1e-9)
    assert out["beta"][1] == 0.0  # the reversed score: floored, not flipped
    assert out["center"] == pytest.approx([score.mean(), -score.mean()])
    forecast = score_to_return(s, [0.001, 0.001], out)
    assert forecast[:, 1] == pytest.approx(0.001)
    assert forecast[:, 0] == pytest.approx(0.001 + slope * (score - score.mean()))


def test_universe_report_finds_the_best_factor_and_compares_the_model_with_it():
    # GIVEN a model score that carries the outcome, and two factors: a weaker one, and noise
    dates, symbols, score, y = _panel(120, 30, seed=2)
    rng = np.random.default_rng(9)
    weak = 0.3 * score + rng.normal(size=len(score))
    noise = rng.normal(size=len(score))
    report = ranking.universe_report(
        symbols,
        dates,
        {"model": np.column_stack([score, score])},
        {"weak": weak, "noise": noise},
        np.column_stack([y, y]),
        quantile=0.1,
        k=5,
        lags=[0, 1],
        execution_lag=1,
        cost_bps=5.0,
        min_names=10,
    )
    assert report["best_factor"] == "weak"
    model = report["models"]["model"]
    assert model["rank_ic"] > report["factors"]["weak"]["rank_ic"] > 0.0
    versus = report["vs_best_factor"]["model"]["1"]
    sections = ranking.CrossSections.of(dates, symbols)
    diff = ranking.daily_rank_ic(sections.grid(score), sections.grid(y), 10) - (
        ranking.daily_rank_ic(sections.grid(weak), sections.grid(y), 10)
    )
    assert versus["rank_ic_diff"] == pytest.approx(diff.mean())
    assert set(model["long_short"]) == {"lag_0", "lag_1"}
    assert model["long_short_sharpe_net"] == model["long_short"]["lag_1"]["sharpe_net"]
    assert set(model["per_year"]) == {"2020"}


def test_two_rows_of_one_symbol_and_date_are_refused():
    with pytest.raises(ValueError, match="share a date"):
        ranking.CrossSections.of(np.array([1, 1]), np.array(["A", "A"]))
