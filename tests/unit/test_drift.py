"""Feature drift: the bundle's training distribution and the PSI of a recent window.

On real data (the embedded MSFT features): the window after the training period does not
drift; the same window with an injected shift does. The PSI, bins and the training windows'
own PSI are checked against direct computations."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from stockml.bundle import FeatureDistribution, population_stability
from stockml.features import FeatureConfig, build_features, feature_columns
from stockml.monitoring.health import drift_report
from stockml.settings import DriftSettings
from utils.sample_data import sample_bars

CONFIG = FeatureConfig()
NAMES = feature_columns(CONFIG)
TRAIN_END = "2017-06-30"


@pytest.fixture(scope="module")
def msft() -> pd.DataFrame:
    """MSFT's features from the embedded data (1999-2017), as the feature pipeline computes them."""
    bars = sample_bars("MSFT", "^GSPC", "^IXIC", "^VIX", start=date(1999, 1, 1))
    market = bars[bars["symbol"].isin(CONFIG.market.symbols)]
    return build_features(bars[bars["symbol"] == "MSFT"], market, None, CONFIG)


@pytest.fixture(scope="module")
def reference(msft: pd.DataFrame) -> FeatureDistribution:
    train = msft[msft["date"] <= TRAIN_END]
    return FeatureDistribution.fit(
        train[NAMES].to_numpy(np.float64), train["date"].to_numpy(), NAMES
    )


def _report(distribution: FeatureDistribution, rows: pd.DataFrame) -> dict:
    config = DriftSettings()
    return drift_report(
        distribution,
        rows,
        rows["date"].max().date(),
        config.psi_threshold,
        config.null_quantile,
        config.max_drifted_share,
    )


def test_bins_and_shares_are_the_training_deciles(
    msft: pd.DataFrame, reference: FeatureDistribution
) -> None:
    train = msft[msft["date"] <= TRAIN_END]
    x = train["rsi"].to_numpy()
    entry = reference.features["rsi"]
    # THEN the edges are the deciles, and each bin (e_i-1, e_i] holds its share of the rows
    assert entry["edges"] == pytest.approx(np.quantile(x, np.arange(1, 10) / 10))
    bounds = [-np.inf, *entry["edges"], np.inf]
    shares = [np.mean((x > lo) & (x <= hi)) for lo, hi in zip(bounds, bounds[1:], strict=False)]
    assert entry["expected"] == pytest.approx(shares)
    # AND constant features (the cross-sections of a single stock) are not tracked
    assert "xs_logret_1" not in reference.features
    # AND a 0/1 flag gets two bins
    assert len(reference.features["volume_missing"]["expected"]) <= 2


def test_psi_and_the_training_windows_own_psi(
    msft: pd.DataFrame, reference: FeatureDistribution
) -> None:
    # GIVEN a window of 60 rows of one feature
    train = msft[msft["date"] <= TRAIN_END].reset_index(drop=True)
    edges = np.asarray(reference.features["rsi"]["edges"])
    expected = np.asarray(reference.features["rsi"]["expected"])
    window = train["rsi"].to_numpy()[100:160]
    actual = np.array([np.sum(np.searchsorted(edges, window, side="left") == k) for k in range(10)])
    actual = actual / 60
    e, a = np.maximum(expected, 1e-4), np.maximum(actual, 1e-4)
    # THEN the PSI is sum (a - e) ln(a / e)
    assert reference.psi("rsi", window) == pytest.approx(float(np.sum((a - e) * np.log(a / e))))
    # AND the recorded quantiles of the training windows' own PSI are those of every
    # 60-session window starting every 5 sessions
    x = train["rsi"].to_numpy()
    own = [reference.psi("rsi", x[i : i + 60]) for i in range(0, len(x) - 60 + 1, 5)]
    assert reference.null_psi("rsi", 0.99) == pytest.approx(np.quantile(own, 0.99))
    assert reference.null_psi("rsi", 1.0) == pytest.approx(max(own))
    assert population_stability(expected, expected) == 0.0


def test_the_sessions_after_training_do_not_drift(
    msft: pd.DataFrame, reference: FeatureDistribution
) -> None:
    # GIVEN the 60 sessions after the training period (real, unseen data)
    later = msft[msft["date"] > TRAIN_END].head(60)
    # WHEN the drift report compares them with the training distribution
    report = _report(reference, later)
    # THEN they do not drift: few features pass what the training history's own windows reached
    assert report["window"]["sessions"] == 60
    assert report["drift"] is False, report["drifted"]
    assert report["drifted_share"] < DriftSettings().max_drifted_share
    # (a fixed PSI threshold of 0.25 alone would flag most of them: why the null quantile)
    assert np.mean([f["psi"] > 0.25 for f in report["features"].values()]) > 0.5


def test_an_injected_drift_is_detected(msft: pd.DataFrame, reference: FeatureDistribution) -> None:
    # GIVEN the same window with every feature shifted by two training standard deviations
    later = msft[msft["date"] > TRAIN_END].head(60).copy()
    train = msft[msft["date"] <= TRAIN_END]
    for name in reference.features:
        later[name] = later[name] + 2.0 * train[name].std()
    # WHEN / THEN it drifts, feature by feature
    report = _report(reference, later)
    assert report["drift"] is True
    assert report["drifted_share"] > 0.8


def test_too_short_a_window_is_not_judged(
    msft: pd.DataFrame, reference: FeatureDistribution
) -> None:
    report = _report(reference, msft[msft["date"] > TRAIN_END].head(30))
    assert report["drift"] is None and "fewer than the 60" in report["reason"]
