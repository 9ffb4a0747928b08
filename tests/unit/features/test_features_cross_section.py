"""Cross-sectional features: per-date ranks/z-scores across the universe, causal across symbols."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.stats import rankdata

from stockml.features import FeatureConfig, build_features, feature_columns, target_columns
from stockml.features.cross_section import cross_section_columns
from utils.universe import make_universe

# momentum over 60 sessions so that a 210-session universe has plenty of defined values
CONFIG = FeatureConfig(
    cross_section={"min_peers": 5, "momentum_lookback": 60, "momentum_skip": 5},
    news={"enabled": False},
    market={"symbols": ["^GSPC"]},
)
XS = cross_section_columns(CONFIG)


@pytest.fixture(scope="module")
def universe() -> pd.DataFrame:
    """14 symbols, two listing late and two with missing sessions, 2016-06 .. 2017-03."""
    return make_universe(n_symbols=14, start="2016-06-01", end="2017-03-31", late=2, gaps=2)


def _oracle_signals(bars: pd.DataFrame, cs: dict[str, int]) -> pd.DataFrame:
    """The raw signals, written independently with pandas per symbol."""
    out = []
    for _, b in bars.sort_values(["symbol", "date"]).groupby("symbol"):
        b = b.reset_index(drop=True)
        lc = np.log(b["adj_close"])
        daily = lc.diff()
        dollars = (b["close"] * b["volume"]).where(b["volume"] > 0)
        out.append(
            pd.DataFrame(
                {
                    "symbol": b["symbol"],
                    "date": b["date"],
                    "logret_1": lc - lc.shift(1),
                    "logret_5": lc - lc.shift(5),
                    "momentum": lc.shift(cs["skip"]) - lc.shift(cs["lookback"]),
                    "volatility": daily.rolling(20).std(),
                    "dollar_volume": np.log(dollars.rolling(20).mean()),
                    "amihud": np.log((daily.abs() / dollars).rolling(20).mean()),
                }
            )
        )
    return pd.concat(out, ignore_index=True)


def _per_date(frame: pd.DataFrame, column: str, how: str, min_peers: int) -> pd.Series:
    """One date at a time, with scipy's ranks: the obvious (slow) way."""
    result = pd.Series(0.0, index=frame.index)
    for _, rows in frame.groupby("date"):
        x = rows[column]
        ok = x[np.isfinite(x)]
        if len(ok) < min_peers:
            continue
        if how == "rank":
            result[ok.index] = (rankdata(ok) - 1) / (len(ok) - 1) - 0.5
        elif how == "zscore":
            result[ok.index] = np.clip((ok - ok.mean()) / ok.std(ddof=0), -3, 3)
        else:
            result[ok.index] = ok - ok.mean()
    return result


@pytest.mark.parametrize("normalize", ["rank", "zscore"])
def test_cross_sections_match_a_date_by_date_oracle(universe: pd.DataFrame, normalize: str) -> None:
    # GIVEN the universe and the configuration (ranks or z-scores)
    config = CONFIG.model_copy(
        update={"cross_section": CONFIG.cross_section.model_copy(update={"normalize": normalize})}
    )
    # WHEN the library computes the features
    out = build_features(universe, None, None, config)
    # THEN each xs column equals the oracle over the rows the library outputs (the peers)
    signals = _oracle_signals(universe, {"lookback": 60, "skip": 5})
    rows = out[["symbol", "date"]].merge(signals, on=["symbol", "date"], how="left")
    assert len(rows) == len(out)
    expected = {
        "xs_logret_1": _per_date(rows, "logret_1", normalize, 5),
        "xs_logret_5": _per_date(rows, "logret_5", normalize, 5),
        "xs_excess_logret_1": _per_date(rows, "logret_1", "excess", 5),
        "xs_excess_logret_5": _per_date(rows, "logret_5", "excess", 5),
        "xs_momentum": _per_date(rows, "momentum", normalize, 5),
        "xs_volatility": _per_date(rows, "volatility", normalize, 5),
        "xs_dollar_volume": _per_date(rows, "dollar_volume", normalize, 5),
        "xs_amihud": _per_date(rows, "amihud", normalize, 5),
    }
    assert list(expected) == XS
    for column, values in expected.items():
        np.testing.assert_allclose(out[column], values, rtol=1e-9, atol=1e-12, err_msg=column)
    # AND the values are informative: ranks span [-0.5, 0.5] on a full date
    last = out[out["date"] == out["date"].max()]
    assert len(last) == 14
    if normalize == "rank":
        assert sorted(last["xs_logret_1"]) == pytest.approx(np.linspace(-0.5, 0.5, 14))


def test_market_series_take_no_part_and_small_cross_sections_are_neutral(
    universe: pd.DataFrame, market_bars: pd.DataFrame
) -> None:
    # GIVEN the universe with the S&P 500 index among its bars, and one symbol alone
    spx = market_bars[market_bars["symbol"] == "^GSPC"]
    spx = spx[spx["date"].between(universe["date"].min(), universe["date"].max())]
    with_index = pd.concat([universe, spx], ignore_index=True)
    # WHEN
    plain = build_features(universe, None, None, CONFIG)
    mixed = build_features(with_index, None, None, CONFIG)
    alone = build_features(universe[universe["symbol"] == "U03"], None, None, CONFIG)
    # THEN the index gets neutral 0s and changes nobody's cross-section
    assert (mixed.loc[mixed["symbol"] == "^GSPC", XS] == 0).all().all()
    stocks = mixed[mixed["symbol"] != "^GSPC"].reset_index(drop=True)
    pd.testing.assert_frame_equal(stocks[XS], plain[XS])
    # AND a single symbol (fewer peers than min_peers) gets 0 everywhere, its other features
    # unchanged by the presence of other symbols
    assert (alone[XS] == 0).all().all()
    per_symbol = [c for c in feature_columns(CONFIG) if c not in XS]
    u03 = plain[plain["symbol"] == "U03"].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone[per_symbol], u03[per_symbol])


def test_disabled_cross_sections_add_no_column(universe: pd.DataFrame) -> None:
    # GIVEN / WHEN
    config = FeatureConfig(cross_section={"enabled": False}, news={"enabled": False})
    out = build_features(universe, None, None, config)
    # THEN
    assert not any(c.startswith("xs_") for c in out.columns)
    assert cross_section_columns(config) == []


def test_the_incremental_look_back_must_cover_the_longest_signal() -> None:
    # GIVEN / WHEN / THEN a look-back shorter than the momentum window would make increments
    # differ from a recompute: refused
    with pytest.raises(ValueError, match="lookback_sessions"):
        FeatureConfig(lookback_sessions=200)
    with pytest.raises(ValueError, match="momentum_skip"):
        FeatureConfig(cross_section={"momentum_lookback": 20, "momentum_skip": 20})
    assert FeatureConfig(lookback_sessions=200, cross_section={"enabled": False})


# ---------------------------------------------------------------------- causality

SMALL = FeatureConfig(
    sma_windows=[5, 10],
    ema_windows=[5, 10],
    volatility_windows=[5],
    volume_window=10,
    cross_section={
        "min_peers": 3,
        "momentum_lookback": 25,
        "momentum_skip": 3,
        "volatility_window": 10,
        "liquidity_window": 5,
    },
    news={"enabled": False},
    market={"symbols": []},
)
SMALL_FEATURES = feature_columns(SMALL)


@pytest.fixture(scope="module")
def small() -> tuple[pd.DataFrame, pd.DataFrame]:
    """6 symbols x 140 sessions (one listing late) and their features."""
    bars = make_universe(n_symbols=6, start="2017-01-03", end="2017-07-24", late=1, seed=11)
    return bars, build_features(bars, None, None, SMALL)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    symbol=st.integers(0, 5),
    cut=st.integers(60, 135),
    change=st.sampled_from(["scale", "drop", "volume", "list", "shock"]),
    factor=st.floats(0.2, 5.0),
)
def test_changing_any_symbols_future_never_changes_an_earlier_row_of_any_symbol(
    small: tuple[pd.DataFrame, pd.DataFrame], symbol: int, cut: int, change: str, factor: float
) -> None:
    # GIVEN the universe and one symbol's rows after a cut date
    bars, before = small
    days = np.sort(bars["date"].unique())
    cut_day = days[cut]
    name = f"U{symbol:02d}"
    future = (bars["symbol"] == name) & (bars["date"] > cut_day)
    # WHEN only that future is changed (prices, rows, volume, a new listing, one price shock)
    after_bars = bars.copy()
    prices = ["open", "high", "low", "close", "adj_close"]
    if change == "scale":
        after_bars.loc[future, prices] *= factor
    elif change == "drop":
        # (a symbol left shorter than the warm-up is refused as bad input)
        assume(((bars["symbol"] == name) & ~future).sum() > SMALL.warmup_rows())
        after_bars = after_bars[~future]
    elif change == "volume":
        after_bars.loc[future, "volume"] = np.where(factor > 1, 0.0, np.nan)
    elif change == "shock":
        first = future[future].index[:1]
        after_bars.loc[first, prices] *= factor
    else:  # a symbol that lists after the cut
        newcomer = bars[(bars["symbol"] == name)].copy()
        newcomer["symbol"] = "NEW"
        newcomer[prices] *= factor
        # a listing too short for the warm-up is refused as bad input, not ignored
        assume((newcomer["date"] > cut_day).sum() > SMALL.warmup_rows())
        after_bars = pd.concat([after_bars, newcomer[newcomer["date"] > cut_day]])
    after = build_features(after_bars, None, None, SMALL)
    # THEN no row dated up to the cut changed, whatever its symbol
    early_before = before[before["date"] <= cut_day].reset_index(drop=True)
    early_after = (
        after[after["date"] <= cut_day]
        .sort_values(["symbol", "date"], kind="mergesort")
        .reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(
        early_after[["symbol", "date", *SMALL_FEATURES]],
        early_before[["symbol", "date", *SMALL_FEATURES]],
        check_exact=False,
        rtol=1e-12,
        atol=1e-15,
    )
    # (targets look ahead by design and are not features)
    assert not set(target_columns(SMALL)) & set(SMALL_FEATURES)
