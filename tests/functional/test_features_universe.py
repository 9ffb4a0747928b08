"""A universe through the feature pipeline: cross-sections stay equal to a full recompute."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stockml.calendar import sessions
from stockml.features import FeatureConfig, build_features, feature_columns, target_columns
from stockml.features.pipeline import update_features
from stockml.settings import StoreSettings
from stockml.storage import Store
from stockml.window import FeatureWindow, latest_keys, windows_prefix
from utils.universe import make_universe

pytestmark = pytest.mark.integration

# a look-back shorter than the history, long enough for the recursive indicators (RSI, MACD,
# EMA 20) to forget their start to ~1e-10
CONFIG = FeatureConfig(
    ema_windows=[5, 10, 20],
    cross_section={"min_peers": 5, "momentum_lookback": 60, "momentum_skip": 5},
    news={"enabled": False},
    lookback_sessions=300,
    serving_rows=40,
)
COLUMNS = feature_columns(CONFIG) + target_columns(CONFIG)


def _assert_table_is_a_full_recompute(
    store: Store, bars: pd.DataFrame, market: pd.DataFrame
) -> None:
    """The stocks' stored features and serving windows equal features computed in one go."""
    stocks = sorted(bars["symbol"].unique())
    stored = store.read_table(store.features_prefix, stocks).reset_index(drop=True)
    full = build_features(bars, market, None, CONFIG)
    assert stored[["symbol", "date"]].equals(full[["symbol", "date"]])
    np.testing.assert_allclose(
        stored[COLUMNS].to_numpy(float), full[COLUMNS].to_numpy(float), rtol=1e-8, atol=1e-10
    )
    keys = latest_keys(
        store.features_prefix, store.list_keys(windows_prefix(store.features_prefix))
    )
    for symbol, rows in full.groupby("symbol"):
        window = FeatureWindow.from_bytes(store.get_bytes(keys[str(symbol)][1]))
        np.testing.assert_allclose(
            window.values,
            rows[feature_columns(CONFIG)].tail(40).to_numpy(float),
            rtol=1e-8,
            atol=1e-10,
        )


def test_incremental_universe_updates_equal_a_full_recompute(
    store_settings: StoreSettings, market_history: pd.DataFrame
) -> None:
    # GIVEN a universe of 12 stocks (2 listing late, 2 missing sessions) and the index, with
    # raw bars and features up to a first cut
    bars = make_universe(n_symbols=12, start="2015-06-01", end="2017-04-28", late=2, gaps=2)
    market = market_history
    days = sessions("2015-06-01", "2017-04-28")
    cut1, cut2 = days[-20], days[-8]
    store = Store.from_settings(store_settings)
    store.upsert_bars(pd.concat([bars[bars["date"] <= cut1], market]))
    update_features(store, None, CONFIG)

    # WHEN the next sessions arrive, one stock's last three late
    late = (bars["symbol"] == "U03") & (bars["date"] > days[-11]) & (bars["date"] <= cut2)
    stage2 = bars[(bars["date"] > cut1) & (bars["date"] <= cut2) & ~late]
    store.upsert_bars(stage2)
    second = update_features(store, None, CONFIG)
    # THEN only the new days (+ the last H rows, whose targets are now known) were written
    assert second.rows["U05"] == 12 + CONFIG.horizon
    # AND the table is what a full recompute over the same bars gives
    _assert_table_is_a_full_recompute(
        store, bars[(bars["date"] <= cut2) & ~late], market[market["date"] <= cut2]
    )

    # WHEN the late sessions arrive alone: every peer's cross-section of those dates changes
    store.upsert_bars(bars[late])
    third = update_features(store, None, CONFIG)
    # THEN those dates were rewritten for every stock (their windows too), and still equal a
    # full recompute
    assert third.rows["U05"] == 3 and third.rows["U03"] == 3 + CONFIG.horizon
    _assert_table_is_a_full_recompute(
        store, bars[bars["date"] <= cut2], market[market["date"] <= cut2]
    )

    # WHEN the last sessions arrive and a stock joins the universe with its whole history
    joiner = make_universe(n_symbols=1, start="2016-09-01", end="2017-04-28", seed=99)
    joiner["symbol"] = "NEW"
    store.upsert_bars(pd.concat([bars[bars["date"] > cut2], joiner]))
    fourth = update_features(store, None, CONFIG)
    # THEN every row whose cross-section it joins is rewritten, and the table is still exact
    assert fourth.rows["U05"] > 300
    everything = pd.concat([bars, joiner], ignore_index=True)
    _assert_table_is_a_full_recompute(store, everything, market)
    # AND a re-run with nothing new writes nothing
    assert update_features(store, None, CONFIG).rows == {}


def test_a_named_universe_limits_the_peers_and_the_rows(
    store_settings: StoreSettings, market_history: pd.DataFrame
) -> None:
    # GIVEN two unrelated groups of stocks in one store
    group_a = make_universe(n_symbols=6, start="2016-06-01", end="2017-01-31")
    group_b = make_universe(n_symbols=6, start="2016-06-01", end="2017-01-31", seed=50)
    group_b["symbol"] = group_b["symbol"].str.replace("U", "B")
    store = Store.from_settings(store_settings)
    store.upsert_bars(pd.concat([group_a, group_b, market_history]))
    peers = sorted(group_a["symbol"].unique())
    # WHEN the features of group A are computed as a universe of its own
    calls: list[tuple[str, int, int]] = []
    report = update_features(
        store, None, CONFIG, universe=peers, progress=lambda *call: calls.append(call)
    )
    # THEN only its rows are written, ranked among themselves only
    assert sorted(report.rows) == peers
    # AND each stage reported its progress up to its total (symbols computed, written, served)
    last = {task: (done, total) for task, done, total in calls}
    assert last == {"features": (6, 6), "write": (6, 6), "windows": (6, 6)}
    stored = store.read_table(store.features_prefix, peers).reset_index(drop=True)
    alone = build_features(group_a, market_history, None, CONFIG)
    np.testing.assert_allclose(
        stored[COLUMNS].to_numpy(float), alone[COLUMNS].to_numpy(float), rtol=1e-8, atol=1e-10
    )


def test_training_sees_the_cross_sections_serving_reads(
    store_settings: StoreSettings, market_history: pd.DataFrame
) -> None:
    # GIVEN a universe's features in the store, computed by the pipeline over all its stocks
    from stockml.orchestration import load_dataset

    bars = make_universe(n_symbols=8, start="2016-06-01", end="2017-01-31")
    store = Store.from_settings(store_settings)
    store.upsert_bars(pd.concat([bars, market_history]))
    update_features(store, None, CONFIG)
    # WHEN training loads two of the stocks
    data = load_dataset(store, ["U02", "U05"], CONFIG)
    # THEN it gets only their rows, with the cross-sections of the whole universe: the very
    # values of the stored rows (computed over the two alone they would differ)
    assert sorted(data.frame["symbol"].unique()) == ["U02", "U05"]
    stored = store.read_table(store.features_prefix, ["U02", "U05"]).reset_index(drop=True)
    xs = [c for c in feature_columns(CONFIG) if c.startswith("xs_")]
    assert (stored[xs].abs().sum() > 0).all()
    np.testing.assert_allclose(
        data.frame[xs].to_numpy(float), stored[xs].to_numpy(float), rtol=1e-9, atol=1e-12
    )


@pytest.fixture(scope="module")
def market_history() -> pd.DataFrame:
    """^GSPC, ^IXIC and ^VIX (arch) over the universe's years."""
    from datetime import date

    from utils.sample_data import sample_bars

    return sample_bars("^GSPC", "^IXIC", "^VIX", start=date(2015, 1, 1), end=date(2017, 12, 31))
