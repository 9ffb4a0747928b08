"""Market context on the equity session grid: real series whose calendars differ, a bounded fill,
non-session index rows that change nothing, missing index sessions flagged (never bridged)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockml.calendar import sessions
from stockml.features import FeatureConfig
from stockml.features.market import VOL_MIN_RETURNS, join_market, market_feature_columns

CONFIG = FeatureConfig()
BOTH = FeatureConfig(market={"symbols": ["^GSPC", "^VIX"], "max_ffill_sessions": 3})
CHANGES = [
    "mkt_gspc_ret_1",
    "mkt_gspc_ret_5",
    "mkt_vix_level",
    "mkt_vix_change_1",
    "mkt_vix_change_5",
]


def index_bars(symbol: str, dates: pd.Series, close: pd.Series) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": symbol,
            "date": pd.to_datetime(dates).astype("datetime64[ns]"),
            "close": close.to_numpy(dtype="float64"),
        }
    )


def flagged(out: pd.DataFrame, name: str) -> np.ndarray:
    return ((out[f"mkt_{name}_stale"] == 1) | (out[f"mkt_{name}_missing"] == 1)).to_numpy()


def test_vix_joined_to_msft_before_after_and_across_missing_sessions(
    msft_bars: pd.DataFrame, market_bars: pd.DataFrame
) -> None:
    # GIVEN MSFT 2013-2017 and the sample ^VIX (starts 2014-01-03), with 2016-03-10 and the four
    # sessions after 2016-06-01 deleted
    rows = msft_bars[msft_bars["date"] >= "2013-06-01"].reset_index(drop=True)
    vix = market_bars[market_bars["symbol"] == "^VIX"]
    dropped = ["2016-03-10", "2016-06-02", "2016-06-03", "2016-06-06", "2016-06-07"]
    vix = vix[~vix["date"].isin(pd.to_datetime(dropped))]
    close = vix.set_index("date")["close"]
    config = FeatureConfig(market={"symbols": ["^VIX"], "max_ffill_sessions": 3})
    # WHEN
    out = join_market(rows, vix, config)
    joined = pd.concat([rows[["date"]], out], axis=1).set_index("date")
    # THEN rows before the VIX history are kept, neutral and flagged missing (not NaN)
    before = joined.loc[:"2014-01-03"]
    assert len(before) > 100
    assert (before["mkt_vix_missing"] == 1).all() and (before["mkt_vix_level"] == 0).all()
    assert not out.isna().any().any()
    # a one-session hole: that session and the ones whose change would span it (the next, and
    # five later) carry the last fresh snapshot, flagged stale
    snapshot_0309 = joined.loc["2016-03-09", ["mkt_vix_level", "mkt_vix_change_1"]]
    for day in ["2016-03-10", "2016-03-11"]:
        assert (joined.loc[day, ["mkt_vix_stale", "mkt_vix_missing"]] == [1.0, 0.0]).all()
        assert (joined.loc[day, snapshot_0309.index] == snapshot_0309).all()
    assert joined.loc["2016-03-10", "mkt_vix_level"] == pytest.approx(close["2016-03-09"] / 100)
    assert joined.loc["2016-03-17", "mkt_vix_stale"] == 1.0
    for day in ["2016-03-14", "2016-03-15", "2016-03-16", "2016-03-18"]:
        assert (joined.loc[day, ["mkt_vix_stale", "mkt_vix_missing"]] == 0).all(), day
    # 03-14's change is over one session (03-11 -> 03-14), not bridged back to 03-09
    assert joined.loc["2016-03-14", "mkt_vix_change_1"] == pytest.approx(
        np.log(close["2016-03-14"] / close["2016-03-11"]), abs=1e-15
    )
    # a four-session hole: three sessions carried, then beyond the bound -> 0 + missing, up to
    # 06-14 (its 5-session change starts on 06-07, inside the hole)
    gap = joined.loc["2016-06-02":"2016-06-14"]
    assert gap["mkt_vix_stale"].tolist() == [1.0] * 3 + [0.0] * 6
    assert gap["mkt_vix_missing"].tolist() == [0.0] * 3 + [1.0] * 6
    assert (gap.iloc[3:][["mkt_vix_level", "mkt_vix_change_1"]] == 0).all().all()
    # the first session whose changes span no hole is fresh, with the exact changes
    fresh = joined.loc["2016-06-15"]
    assert (fresh[["mkt_vix_stale", "mkt_vix_missing"]] == 0).all()
    assert fresh["mkt_vix_change_1"] == pytest.approx(
        np.log(close["2016-06-15"] / close["2016-06-14"]), abs=1e-15
    )
    assert fresh["mkt_vix_change_5"] == pytest.approx(
        np.log(close["2016-06-15"] / close["2016-06-08"]), abs=1e-15
    )


def test_the_join_never_takes_a_value_dated_after_the_row(market_bars: pd.DataFrame) -> None:
    # GIVEN ^GSPC bars and rows on every calendar day of a month (weekends and a holiday included)
    gspc = market_bars[market_bars["symbol"] == "^GSPC"]
    days = pd.DataFrame({"date": pd.date_range("2015-06-25", "2015-07-10", freq="D")})
    config = FeatureConfig(market={"symbols": ["^GSPC"], "max_ffill_sessions": 5})
    # WHEN
    out = join_market(days, gspc, config)
    # THEN each row's 1-day return is the one of the latest index bar dated <= the row
    closes = gspc.set_index("date")["close"]
    logret = np.log(closes).diff()
    for day, value in zip(days["date"], out["mkt_gspc_ret_1"], strict=True):
        latest = logret.loc[:day].index[-1]
        assert value == pytest.approx(logret.loc[latest], abs=1e-15)
        assert latest <= day
    # 2015-07-03 (Independence Day observed, no session) carries 07-02's value
    july3 = out[days["date"] == "2015-07-03"].iloc[0]
    assert july3["mkt_gspc_ret_1"] == pytest.approx(logret.loc["2015-07-02"])


# ------------------------------------------------------------------ properties of the grid


@pytest.fixture(scope="module")
def grid_case(market_bars: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DatetimeIndex]:
    """Equity rows on every NYSE session of 2015-04..2015-12, ^GSPC and ^VIX bars from 2015-01."""
    market = market_bars[
        market_bars["symbol"].isin(["^GSPC", "^VIX"])
        & (market_bars["date"] >= "2015-01-01")
        & (market_bars["date"] <= "2015-12-31")
    ].reset_index(drop=True)
    days = sessions("2015-04-01", "2015-12-31")
    return pd.DataFrame({"date": days}), market, days


def _non_sessions() -> list[pd.Timestamp]:
    every = pd.date_range("2014-12-20", "2016-01-10", freq="D")
    return sorted(set(every) - set(sessions(every[0], every[-1])))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_non_sessions()),
            st.sampled_from(["^GSPC", "^VIX"]),
            st.floats(min_value=1e-3, max_value=1e6, allow_nan=False),
        ),
        min_size=1,
        max_size=25,
        unique_by=lambda t: (t[0], t[1]),
    )
)
def test_index_rows_on_non_session_days_change_no_feature(grid_case, extra) -> None:  # type: ignore[no-untyped-def]
    # GIVEN index series on the session grid, and the same with rows on weekends and holidays
    rows, market, _ = grid_case
    noisy = pd.concat(
        [market, pd.DataFrame(extra, columns=["date", "symbol", "close"])], ignore_index=True
    ).sample(frac=1.0, random_state=0)  # any order
    # WHEN
    clean_out = join_market(rows, market, BOTH)
    noisy_out = join_market(rows, noisy, BOTH)
    # THEN no feature of any equity session moves
    pd.testing.assert_frame_equal(noisy_out, clean_out, check_exact=True)


def _vol_oracle(close: pd.Series, days: pd.DatetimeIndex, day: pd.Timestamp) -> float:
    """Std (ddof 1) of the 1-session log returns whose both ends exist, in the 20 sessions to ``day``."""
    i = days.get_loc(day)
    window = days[i - 19 : i + 1]
    rets = [
        float(np.log(close[s] / close[days[days.get_loc(s) - 1]]))
        for s in window
        if s in close.index and days[days.get_loc(s) - 1] in close.index
    ]
    assert len(rets) >= VOL_MIN_RETURNS
    return float(np.std(rets, ddof=1))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sets(st.integers(min_value=0, max_value=150), min_size=1, max_size=2))
def test_a_missing_index_session_is_flagged_and_changes_nothing_else(grid_case, holes) -> None:  # type: ignore[no-untyped-def]
    # GIVEN the index series with one or two sessions deleted (both indices)
    rows, market, days = grid_case
    deleted = [days[20 + h] for h in sorted(holes)]
    thinned = market[~market["date"].isin(deleted)]
    # WHEN
    full = join_market(rows, market, BOTH)
    out = join_market(rows, thinned, BOTH)
    # THEN exactly the deleted sessions and those whose change would span one (the next session,
    # and five sessions later) are flagged; nothing is bridged over the hole
    pos = {days.get_loc(d) + k for d in deleted for k in (0, 1, 5)}
    expected = np.isin(np.arange(len(days)), sorted(pos))
    for name in ("gspc", "vix"):
        assert flagged(full, name).sum() == 0
        assert (flagged(out, name) == expected).all(), name
    # every other session keeps its changes exactly
    np.testing.assert_array_equal(out.loc[~expected, CHANGES], full.loc[~expected, CHANGES])
    # a flagged session holds the last fresh snapshot (or 0 beyond the bound), never a change
    # spanning two sessions
    for i in np.flatnonzero(expected):
        source = max(j for j in range(i) if not expected[j])
        want = full.loc[source, CHANGES] if i - source <= 3 else 0.0 * full.loc[source, CHANGES]
        assert (out.loc[i, CHANGES] == want).all()
    # and the volatility is the std of the 1-session returns that exist in its window
    close = thinned[thinned["symbol"] == "^GSPC"].set_index("date")["close"]
    grid = sessions("2015-01-01", "2015-12-31")
    for i in np.flatnonzero(~expected)[::7]:
        assert out.loc[i, "mkt_gspc_vol_20"] == pytest.approx(
            _vol_oracle(close, grid, days[i]), rel=1e-9
        )


# ------------------------------------------------------------------------ real vendor data


@pytest.mark.shared_data
def test_real_cboe_vix_file_on_the_nyse_grid(shared_data: Path) -> None:
    # GIVEN the CBOE VIX file (1990-2020): one row on a day the NYSE was closed (2004-06-11,
    # President Reagan's funeral) and four NYSE sessions without a row
    raw = pd.read_csv(shared_data / "prices/daily/cboe-vix/vix-daily-1990-01-02_to_2020-08-31.csv")
    vix = index_bars("^VIX", raw["DATE"], raw["CLOSE"])
    days = sessions("1990-01-02", "2020-08-31")
    rows = pd.DataFrame({"date": days})
    assert pd.Timestamp("2004-06-11") in set(vix["date"]) and pd.Timestamp("2004-06-11") not in days
    holes = sorted(set(days) - set(vix["date"]))
    assert [d.strftime("%Y-%m-%d") for d in holes] == [
        "1991-03-01",
        "1997-01-31",
        "1997-11-26",
        "1999-12-31",
    ]
    config = FeatureConfig(market={"symbols": ["^VIX"]})
    # WHEN
    out = join_market(rows, vix, config).set_index(days)
    # THEN the non-session row changes nothing: 2004-06-14's change is over 06-10 -> 06-14
    close = vix.set_index("date")["close"]
    without = join_market(rows, vix[vix["date"] != "2004-06-11"], config).set_index(days)
    pd.testing.assert_frame_equal(out, without, check_exact=True)
    assert out.loc["2004-06-14", "mkt_vix_change_1"] == pytest.approx(
        np.log(close["2004-06-14"] / close["2004-06-10"]), abs=1e-15
    )
    # the missing sessions are flagged stale, with the sessions whose changes would span them
    expected = {days[days.get_loc(d) + k] for d in holes for k in (0, 1, 5)}
    assert set(days[out["mkt_vix_stale"] == 1]) == expected
    assert out["mkt_vix_missing"].sum() == 5  # the warm-up: change_5 needs five sessions
    # every fresh session's changes are between consecutive NYSE sessions (independent: pandas
    # over the file reindexed on the sessions)
    on_grid = close.reindex(days)
    fresh = out[(out["mkt_vix_stale"] == 0) & (out["mkt_vix_missing"] == 0)]
    np.testing.assert_allclose(
        fresh["mkt_vix_change_1"], np.log(on_grid / on_grid.shift(1))[fresh.index], atol=1e-15
    )
    np.testing.assert_allclose(
        fresh["mkt_vix_change_5"], np.log(on_grid / on_grid.shift(5))[fresh.index], atol=1e-15
    )
    np.testing.assert_allclose(fresh["mkt_vix_level"], on_grid[fresh.index] / 100, atol=1e-15)


def test_no_market_data_is_neutral_and_flagged() -> None:
    # GIVEN rows and no market bars / WHEN / THEN zeros, every *_missing flag set
    rows = pd.DataFrame({"date": pd.to_datetime(["2020-01-02", "2020-01-03"])})
    out = join_market(rows, None, CONFIG)
    assert list(out.columns) == market_feature_columns(CONFIG)
    assert (out.filter(like="_missing") == 1).all().all()
    assert (out.drop(columns=out.filter(like="_missing").columns) == 0).all().all()
