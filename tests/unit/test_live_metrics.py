"""stockml.monitoring.live's building blocks: outcomes, served forecasts, the rank IC."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from stockml.monitoring.live import VersionInfo, rank_ic, realised_outcomes, served_to_forecasts


def test_outcomes_are_forward_log_returns_of_the_stored_sessions() -> None:
    bars = pd.DataFrame(
        {
            "symbol": ["A"] * 4,
            "date": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]),
            "adj_close": [100.0, 110.0, 99.0, 120.0],
        }
    )
    out = realised_outcomes(bars, 2).set_index("date")
    assert out.loc["2024-01-02", "target_1"] == pytest.approx(np.log(1.1))
    assert out.loc["2024-01-02", "target_2"] == pytest.approx(np.log(0.99))
    assert np.isnan(out.loc["2024-01-05", "target_1"])  # not realised yet
    assert np.isnan(out.loc["2024-01-04", "target_2"])


def test_served_forecasts_keep_unserved_horizons_and_models_unknown() -> None:
    # GIVEN one request of 1 day (ensemble) and one of 2 days (ensemble, lstm)
    served = pd.DataFrame(
        {
            "model_version": "v1",
            "symbol": "A",
            "as_of": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-03", "2024-01-03"]),
            "model": ["ensemble", "ensemble", "ensemble", "lstm"],
            "horizon": [1, 1, 2, 1],
            "predicted_log_return": [0.01, 0.02, 0.03, -0.01],
            "last_close": 100.0,
            "lower": [90.0, 95.0, np.nan, np.nan],
            "upper": [110.0, 105.0, np.nan, np.nan],
        }
    )
    info = VersionInfo("v1", 2, {"naive": [0.0, 0.0], "drift": [0.001, 0.002]})
    forecasts = served_to_forecasts(served, info)
    ensemble = forecasts.predictions["ensemble"]
    assert ensemble[0, 0] == 0.01 and np.isnan(ensemble[0, 1])
    assert ensemble[1].tolist() == [0.02, 0.03]
    assert np.isnan(forecasts.predictions["lstm"][0, 0])
    assert forecasts.predictions["drift"].tolist() == [[0.001, 0.002]] * 2
    # the served price band as log returns of the last close
    assert forecasts.lower["ensemble"][0, 0] == pytest.approx(np.log(0.9))
    assert "lstm" not in forecasts.lower  # served without a band


def test_rank_ic_averages_the_sessions_cross_sections() -> None:
    rng = np.random.default_rng(3)
    dates = np.repeat(np.arange(4), 8)
    pred, y = rng.normal(size=32), rng.normal(size=32)
    # a session with too few symbols is left out
    keep = ~((dates == 3) & (np.arange(32) % 8 >= 3))
    ic, sessions = rank_ic(pred[keep], y[keep], dates[keep], min_symbols=5)
    expected = [scipy_stats.spearmanr(pred[dates == d], y[dates == d]).statistic for d in range(3)]
    assert sessions == 3 and ic == pytest.approx(np.mean(expected))
    # a single stock has no cross-section
    assert rank_ic(pred[:8], y[:8], np.arange(8), min_symbols=5) == (None, 0)
