"""build_features: the contract, per-symbol isolation, warm-up, targets, errors, no look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockml.errors import FeatureError
from stockml.features import FeatureConfig, build_features, feature_columns, target_columns
from stockml.features.lookahead import lookahead_violations, truncate_inputs

CONFIG = FeatureConfig()


@pytest.fixture(scope="module")
def two_symbols(msft_bars: pd.DataFrame) -> pd.DataFrame:
    """1200 MSFT sessions (2013-2017) and the same bars scaled x3 with a 2:1 'split' in adj_close."""
    msft = msft_bars.iloc[-1200:].reset_index(drop=True)
    other = msft.copy()
    other["symbol"] = "OTHER"
    for col in ("open", "high", "low", "close"):
        other[col] = other[col] * 3.0
    # raw closes halve mid-way (a 2:1 split); adj_close is continuous
    other["adj_close"] = other["close"] / 2.0
    other.loc[600:, ["open", "high", "low", "close"]] /= 2.0
    other = other.iloc[::-1]  # unsorted input must not matter
    return pd.concat([other, msft], ignore_index=True)


def test_contract_columns_dtypes_and_warmup(
    two_symbols: pd.DataFrame, market_bars: pd.DataFrame
) -> None:
    # GIVEN two symbols of 1200 bars each
    # WHEN
    out = build_features(two_symbols, market_bars, None, CONFIG)
    # THEN the columns are the contract's, in order, features float64 without NaN
    feats = feature_columns(CONFIG)
    assert list(out.columns) == [
        "symbol",
        "date",
        "close",
        "adj_close",
        *feats,
        *target_columns(CONFIG),
    ]
    assert target_columns(CONFIG) == [f"target_{h}" for h in range(1, 6)]
    assert all(out[c].dtype == "float64" for c in feats)
    assert not out[feats].isna().any().any()
    # warm-up rows are dropped: each symbol starts warmup_rows() after its first bar
    for symbol, rows in out.groupby("symbol"):
        first_bar = (
            two_symbols.loc[two_symbols["symbol"] == symbol, "date"]
            .sort_values()
            .iloc[CONFIG.warmup_rows()]
        )
        assert rows["date"].iloc[0] == first_bar
        assert rows["date"].is_monotonic_increasing
    assert len(out) == 2 * (1200 - CONFIG.warmup_rows())


def test_targets_are_forward_log_returns_nan_at_the_end(two_symbols: pd.DataFrame) -> None:
    # GIVEN / WHEN
    out = build_features(two_symbols, None, None, CONFIG)
    msft = out[out["symbol"] == "MSFT"].reset_index(drop=True)
    # THEN target_h = log(adj_close[t+h] / adj_close[t]); the last h rows are NaN
    for h in (1, 5):
        expected = np.log(msft["adj_close"].shift(-h) / msft["adj_close"])
        np.testing.assert_allclose(msft[f"target_{h}"], expected, rtol=1e-12, atol=1e-14)
        assert msft[f"target_{h}"].iloc[-h:].isna().all()
        assert msft[f"target_{h}"].iloc[:-h].notna().all()


def test_symbols_do_not_leak_into_each_other_and_splits_are_adjusted(
    two_symbols: pd.DataFrame,
) -> None:
    # GIVEN MSFT alone and MSFT next to OTHER (3x prices, 2:1 split in the raw close)
    together = build_features(two_symbols, None, None, CONFIG)
    alone = build_features(two_symbols[two_symbols["symbol"] == "MSFT"], None, None, CONFIG)
    feats = feature_columns(CONFIG)
    # THEN MSFT's rows are identical either way
    pd.testing.assert_frame_equal(
        together[together["symbol"] == "MSFT"].reset_index(drop=True), alone
    )
    # AND the scale-free features of OTHER equal MSFT's: neither the price level nor the split
    # shows (the adjusted series is MSFT x 1.5)
    other = together[together["symbol"] == "OTHER"].reset_index(drop=True)
    price_feats = [c for c in feats if not c.startswith(("mkt_", "news_"))]
    np.testing.assert_allclose(other[price_feats], alone[price_feats], rtol=1e-7, atol=1e-9)


def test_config_round_trips_through_a_dict() -> None:
    # GIVEN a non-default config, stored in a bundle as a dict
    config = FeatureConfig(horizon=3, sma_windows=[10, 5], market={"symbols": ["^GSPC"]})
    # WHEN rebuilt from the dict
    again = FeatureConfig(**config.model_dump())
    # THEN it is equal and names the same columns
    assert again == config
    assert feature_columns(again) == feature_columns(config)
    assert target_columns(again) == ["target_1", "target_2", "target_3"]
    assert "mkt_ixic_ret_1" not in feature_columns(again)


def test_the_yaml_config_loads() -> None:
    # GIVEN configs/feature_config.yaml / WHEN / THEN it validates and keeps H = 5
    config = FeatureConfig.from_yaml()
    assert config.horizon == 5
    assert config.market.symbols == ["^GSPC", "^IXIC", "^VIX"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.iloc[0:0], "empty"),
        (lambda b: b.drop(columns=["adj_close"]), "missing columns"),
        (lambda b: b.assign(close=b["close"].where(b.index != 700)), "NaN"),
        (lambda b: b.assign(low=b["low"].where(b.index != 5, -1.0)), "non-positive"),
        (lambda b: pd.concat([b, b.iloc[[10]]]), "duplicate"),
        (lambda b: b.iloc[:40], "too few bars"),
    ],
)
def test_bad_inputs_give_a_clear_feature_error(
    msft_bars: pd.DataFrame, mutate, message: str
) -> None:  # type: ignore[no-untyped-def]
    # GIVEN broken bars / WHEN / THEN a FeatureError that says what is wrong
    bars = msft_bars.iloc[-800:].reset_index(drop=True)
    with pytest.raises(FeatureError, match=message):
        build_features(mutate(bars), None, None, CONFIG)


def test_missing_volume_gives_zero_and_a_flag_not_nan(market_bars: pd.DataFrame) -> None:
    # GIVEN ^VIX bars: close only, no volume
    vix = market_bars[market_bars["symbol"] == "^VIX"]
    # WHEN
    out = build_features(vix, None, None, CONFIG)
    # THEN volume features are neutral and flagged, and no row is lost to NaN
    assert (out["volume_missing"] == 1.0).all()
    assert (out[["obv_flow", "volume_z"]] == 0.0).all().all()
    assert len(out) == len(vix) - CONFIG.warmup_rows()


# ------------------------------------------------------------------------------- look-ahead


@pytest.fixture(scope="module")
def lookahead_inputs(msft_bars: pd.DataFrame, market_bars: pd.DataFrame):  # type: ignore[no-untyped-def]
    bars = msft_bars[(msft_bars["date"] >= "2015-06-01")].reset_index(drop=True)
    market = market_bars[market_bars["date"] >= "2015-03-01"].reset_index(drop=True)
    # news around the dates, some after the close (they must count for the NEXT session)
    stamps = pd.date_range("2016-01-04 13:00", "2017-11-01", freq="37h", tz="UTC")
    news = pd.DataFrame(
        {
            "symbol": "MSFT",
            "published_at": stamps,
            "title": np.where(
                np.arange(len(stamps)) % 3 == 0,
                "Shares plunged after a profit warning",
                "Net sales increased to a record high",
            ),
            "summary": "",
            "url": [f"https://example.test/{i}" for i in range(len(stamps))],
            "source": "test",
        }
    )
    return bars, market, news


def _compute(inputs, transform=None):  # type: ignore[no-untyped-def]
    bars, market, news = inputs

    def compute(cut: pd.Timestamp | None) -> pd.DataFrame:
        b, m, n = (bars, market, news) if cut is None else truncate_inputs(bars, market, news, cut)
        out = build_features(b, m, n, CONFIG)
        return out if transform is None else transform(out)

    return compute


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=3))
def test_no_lookahead_for_random_cut_dates(lookahead_inputs, offsets: list[int]) -> None:  # type: ignore[no-untyped-def]
    # GIVEN random cut dates inside the feature rows (after warm-up, before the end)
    bars = lookahead_inputs[0]
    dates = bars["date"].iloc[CONFIG.warmup_rows() + 1 :].reset_index(drop=True)
    cuts = [dates.iloc[len(dates) - 1 - o] for o in offsets]
    # WHEN features on the data known at t are compared with the full-history features at t
    problems = lookahead_violations(
        _compute(lookahead_inputs), cuts, feature_columns(CONFIG), rtol=1e-9
    )
    # THEN nothing at t depends on data after t
    assert problems == []


def test_the_checker_catches_a_centered_window(lookahead_inputs) -> None:  # type: ignore[no-untyped-def]
    # GIVEN a deliberately leaky feature: a centered rolling mean (reads 2 rows ahead)
    def leaky(out: pd.DataFrame) -> pd.DataFrame:
        return out.assign(rsi=out["rsi"].rolling(5, center=True, min_periods=1).mean())

    cuts = [lookahead_inputs[0]["date"].iloc[-30]]
    # WHEN / THEN the checker reports exactly that column
    problems = lookahead_violations(
        _compute(lookahead_inputs, leaky), cuts, feature_columns(CONFIG)
    )
    assert problems and all(": rsi " in p for p in problems)


def test_the_checker_catches_news_counted_before_it_was_published(lookahead_inputs) -> None:  # type: ignore[no-untyped-def]
    # GIVEN a leaky news mapping: every headline moved 12 hours earlier (after-close news then
    # lands on the same day)
    bars, market, news = lookahead_inputs
    shifted = news.assign(published_at=news["published_at"] - pd.Timedelta(hours=12))

    def compute(cut: pd.Timestamp | None) -> pd.DataFrame:
        b, m, n = (bars, market, news) if cut is None else truncate_inputs(bars, market, news, cut)
        n = n.assign(published_at=n["published_at"] - pd.Timedelta(hours=12))
        return build_features(b, m, n, CONFIG)

    # WHEN the news feature rows at the cuts are checked
    closes_after = shifted["published_at"].dt.tz_convert("America/New_York").dt.hour
    assert (closes_after >= 4).any()
    cuts = list(bars["date"].iloc[-300::7])
    problems = lookahead_violations(compute, cuts, ["news_sentiment", "news_count"])
    # THEN it is caught on at least one day
    assert any("news_" in p for p in problems)
