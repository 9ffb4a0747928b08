"""Data quality of the feature table built from real series (what training and serving consume)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stockml.features import FeatureConfig, build_features, feature_columns, target_columns
from utils.sample_data import sample_bars

CONFIG = FeatureConfig()


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """Features of MSFT (pmdarima) and ^GSPC, ^IXIC, ^VIX (arch) with the indices as market context."""
    bars = sample_bars("MSFT", "^GSPC", "^IXIC", "^VIX")
    market = bars[bars["symbol"].isin(CONFIG.market.symbols)]
    return build_features(bars, market, None, CONFIG)


def test_every_feature_is_finite(table: pd.DataFrame) -> None:
    # GIVEN / WHEN / THEN no NaN or inf in any feature of any symbol, every symbol present
    assert np.isfinite(table[feature_columns(CONFIG)].to_numpy()).all()
    assert set(table["symbol"]) == {"MSFT", "^GSPC", "^IXIC", "^VIX"}


def test_bounded_features_stay_in_their_ranges(table: pd.DataFrame) -> None:
    # GIVEN oscillators and ratios with known ranges / THEN
    for col in ("rsi", "stoch_k", "stoch_d"):
        assert table[col].between(0, 1).all(), table.loc[
            ~table[col].between(0, 1), ["symbol", "date", col]
        ]
    assert table["obv_flow"].between(-1, 1).all()
    for col in (
        "bb_width",
        "atr_ratio",
        "hl_range",
        *[f"volatility_{w}" for w in CONFIG.volatility_windows],
    ):
        assert (table[col] >= 0).all(), col
    flags = [c for c in feature_columns(CONFIG) if c.endswith(("_stale", "_missing"))]
    assert set(np.unique(table[flags].to_numpy())) <= {0.0, 1.0}
    for symbol in CONFIG.market.symbols:
        name = symbol.strip("^").lower()
        assert not ((table[f"mkt_{name}_stale"] == 1) & (table[f"mkt_{name}_missing"] == 1)).any()


def test_features_are_scale_free(table: pd.DataFrame) -> None:
    # GIVEN MSFT from 0.07 to 84 dollars and ^GSPC around 1000-2900 points
    # THEN price-ratio features have the same order of magnitude for both
    ratios = ["sma_ratio_20", "ema_ratio_20", "macd_line", "atr_ratio", "logret_5"]
    by_symbol = table.groupby("symbol")[ratios].agg(lambda s: s.abs().quantile(0.99))
    assert (by_symbol < 1.0).all().all()


def test_rows_are_unique_sorted_and_targets_add_up(table: pd.DataFrame) -> None:
    # GIVEN / THEN one row per (symbol, date), sorted
    assert not table.duplicated(["symbol", "date"]).any()
    assert table.groupby("symbol")["date"].apply(lambda d: d.is_monotonic_increasing).all()
    # AND log returns add up: target_h = target_1[t] + ... + target_1[t+h-1]
    for _, rows in table.groupby("symbol"):
        t1 = rows["target_1"].to_numpy()
        h = CONFIG.horizon
        summed = sum(t1[i : len(t1) - h + 1 + i] for i in range(h))
        np.testing.assert_allclose(
            rows[f"target_{h}"].to_numpy()[: len(t1) - h + 1], summed, atol=1e-12
        )
        assert rows[target_columns(CONFIG)].iloc[-1].isna().all()
