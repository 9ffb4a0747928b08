"""Universe mode of the trainer on synthetic universes: a planted cross-sectional edge is found
and passes the ranking checks; a universe without one is refused; early stopping follows the
validation slice's rank IC (checked against scipy, iteration by iteration)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from stockml.models import LightGBMModel, XGBoostModel
from stockml.train import evaluate
from utils.training_data import tiny_config, universe_dataset


def test_a_planted_edge_is_ranked_and_beats_the_single_factors():
    # GIVEN a universe whose next-session returns follow a known signal (rank IC ~0.26)
    data = universe_dataset(strength=0.004)
    config = tiny_config().for_universe()

    # WHEN it is evaluated walk-forward in universe mode
    report = evaluate(data, config)

    # THEN the ensemble ranks: a rank IC near the planted one, significant, far above every
    # single factor (which carry no edge by construction)
    assert 0.15 < report["rank_ic"] < 0.4 and report["rank_ic_t"] > 5
    universe = report["universe"]
    for factor in universe["factors"].values():
        assert abs(factor["rank_ic"]) < 0.06
    versus = universe["vs_best_factor"]["ensemble"]["1"]
    assert versus["t"] > 3
    # AND trading it at the signal's own close earns, a session later the edge is gone
    ls = universe["models"]["ensemble"]["long_short"]
    assert ls["lag_0"]["sharpe_net"] > 3 > ls["lag_1"]["sharpe_net"]
    # AND the gate's ranking checks pass but the lag-1 Sharpe check (the configured lag)
    verdicts = {c["name"]: c["passed"] for c in report["gate"]["checks"]}
    assert verdicts["rank_ic_t_h1"] and verdicts["rank_ic_t_vs_best_factor_h1"]
    assert not verdicts["long_short_sharpe_net"]
    # AND the headline keys of `evaluate --json` are the ensemble's
    assert report["long_short_sharpe_net"] == ls["lag_1"]["sharpe_net"]
    assert report["turnover"] == universe["models"]["ensemble"]["turnover"]


def test_a_universe_without_an_edge_is_refused():
    data = universe_dataset(strength=0.0, seed=4)
    report = evaluate(data, tiny_config().for_universe())
    failed = {c["name"] for c in report["gate"]["checks"] if not c["passed"]}
    assert report["gate"]["passed"] is False
    assert {"rank_ic_t_h1", "rank_ic_t_vs_best_factor_h1"} <= failed
    assert abs(report["rank_ic"]) < 0.05


def _rank_ic_by_iteration(predict, n: int, x: np.ndarray, y: np.ndarray, dates: np.ndarray):
    """Mean daily Spearman (scipy) of the first k trees' predictions, k = 1..n."""
    out = []
    for k in range(1, n + 1):
        pred = predict(x, k)
        daily = [
            stats.spearmanr(pred[dates == d], y[dates == d]).statistic for d in np.unique(dates)
        ]
        out.append(np.nanmean(daily))
    return np.asarray(out)


# seeds where stopping on the validation MSE would keep another number of trees
@pytest.mark.parametrize(("name", "seed"), [("xgboost", 3), ("lightgbm", 2)])
def test_trees_stop_at_the_best_validation_rank_ic(name: str, seed: int):
    # GIVEN one fit/validation split of the planted universe
    frame = universe_dataset(strength=0.002, seed=seed).frame
    features = ["signal", "ret_1", "volatility_20", "xs_logret_1"]
    days = np.sort(frame["date"].unique())
    fit = frame[frame["date"] < days[150]].dropna(subset=["target_1"])
    val = frame[(frame["date"] >= days[155]) & (frame["date"] < days[200])]
    x, y = fit[features].to_numpy(np.float32), fit[["target_1"]].to_numpy()
    xv, yv = val[features].to_numpy(np.float32), val[["target_1"]].to_numpy()
    dates = pd.factorize(val["date"])[0]
    n = 25
    config = tiny_config()
    if name == "xgboost":
        cfg = config.xgboost.model_copy(
            update={"n_estimators": n, "early_stopping_rounds": n, "learning_rate": 0.3}
        )
        model = XGBoostModel(cfg, config.runtime)

        def first_k(data: np.ndarray, k: int) -> np.ndarray:
            import xgboost

            return full.boosters_[0].predict(xgboost.DMatrix(data), iteration_range=(0, k))
    else:
        cfg = config.lightgbm.model_copy(
            update={"n_estimators": n, "early_stopping_rounds": n, "learning_rate": 0.3}
        )
        model = LightGBMModel(cfg, config.runtime)

        def first_k(data: np.ndarray, k: int) -> np.ndarray:
            return full.boosters_[0].predict(data, num_iteration=k)

    # WHEN it is fitted with the validation rows' dates (early stopping on the rank IC), and
    # the same model is grown for all n trees (the oracle's sequence of models)
    model.fit(x, y, xv, yv, val_groups=dates)
    full = type(model)(cfg, config.runtime)
    full.iterations_ = [n]
    full = full.refit(x, y)

    # THEN it kept the trees up to the iteration of the best mean daily Spearman
    curve = _rank_ic_by_iteration(first_k, n, xv, yv[:, 0], dates)
    assert model.iterations_ == [int(np.argmax(curve)) + 1]
