"""Market context: an as-of join over real series whose calendars differ, with a bounded fill."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stockml.features import FeatureConfig
from stockml.features.market import join_market, market_feature_columns

CONFIG = FeatureConfig()


def index_bars(symbol: str, dates: pd.Series, close: pd.Series) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": symbol,
            "date": pd.to_datetime(dates).astype("datetime64[ns]"),
            "close": close.to_numpy(dtype="float64"),
        }
    )


def test_vix_joined_to_msft_before_after_and_across_a_missing_day(
    msft_bars: pd.DataFrame, market_bars: pd.DataFrame
) -> None:
    # GIVEN MSFT 2013-2017 and the sample ^VIX (starts 2014-01-03), with 2016-03-10 and the four
    # sessions after 2016-06-01 deleted
    rows = msft_bars[msft_bars["date"] >= "2013-06-01"].reset_index(drop=True)
    vix = market_bars[market_bars["symbol"] == "^VIX"]
    dropped = ["2016-03-10", "2016-06-02", "2016-06-03", "2016-06-06", "2016-06-07"]
    vix = vix[~vix["date"].isin(pd.to_datetime(dropped))]
    config = FeatureConfig(market={"symbols": ["^VIX"], "max_ffill_sessions": 3})
    # WHEN
    out = join_market(rows, vix, config)
    joined = pd.concat([rows[["date"]], out], axis=1).set_index("date")
    # THEN rows before the VIX history are kept, neutral and flagged missing (not NaN)
    before = joined.loc[:"2014-01-03"]
    assert len(before) > 100
    assert (before["mkt_vix_missing"].iloc[:-1] == 1).all() and (
        before["mkt_vix_level"].iloc[:-1] == 0
    ).all()
    assert not out.isna().any().any()
    # a one-day hole carries the previous day's value, flagged stale
    hole = joined.loc["2016-03-10"]
    previous = vix[vix["date"] == "2016-03-09"]["close"].iloc[0]
    assert hole["mkt_vix_level"] == pytest.approx(previous / 100)
    assert (hole["mkt_vix_stale"], hole["mkt_vix_missing"]) == (1.0, 0.0)
    # a four-session hole: three sessions carried, the fourth beyond the bound -> 0 + missing
    gap = joined.loc["2016-06-02":"2016-06-07"]
    assert gap["mkt_vix_stale"].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert gap["mkt_vix_missing"].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert gap["mkt_vix_level"].iloc[3] == 0.0
    # a normal day is fresh
    assert (joined.loc["2016-06-08", ["mkt_vix_stale", "mkt_vix_missing"]] == 0).all()


def test_the_join_never_takes_a_value_dated_after_the_row(
    msft_bars: pd.DataFrame, market_bars: pd.DataFrame
) -> None:
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


@pytest.mark.shared_data
def test_cboe_vix_against_spy_real_calendars(shared_data: Path) -> None:
    # GIVEN SPY (Yahoo, 2008-2017) and the CBOE VIX file: two vendors, two calendars
    spy = pd.read_csv(
        shared_data / "prices/daily/mplfinance/yahoofinance-SPY-20080101-20180101.csv"
    )
    vix = pd.read_csv(shared_data / "prices/daily/cboe-vix/vix-daily-1990-01-02_to_2020-08-31.csv")
    rows = pd.DataFrame({"date": pd.to_datetime(spy["Date"])})
    only_spy = sorted(set(rows["date"]) - set(pd.to_datetime(vix["DATE"])))
    vix_bars = index_bars("^VIX", vix["DATE"], vix["CLOSE"])
    config = FeatureConfig(market={"symbols": ["^VIX"]})
    # WHEN
    out = join_market(rows, vix_bars, config)
    # THEN every SPY date gets a value; dates VIX lacks are exactly the stale ones
    assert not out.isna().any().any()
    stale_dates = set(rows.loc[out["mkt_vix_stale"] == 1, "date"])
    assert stale_dates == set(only_spy)
    assert (out["mkt_vix_missing"] == 0).all()
    # and a fresh row's level is that day's VIX close / 100
    fresh = rows.assign(level=out["mkt_vix_level"])[out["mkt_vix_stale"] == 0].iloc[100]
    expected = vix_bars.set_index("date").loc[fresh["date"], "close"] / 100
    assert fresh["level"] == pytest.approx(expected)


def test_no_market_data_is_neutral_and_flagged() -> None:
    # GIVEN rows and no market bars / WHEN / THEN zeros, every *_missing flag set
    rows = pd.DataFrame({"date": pd.to_datetime(["2020-01-02", "2020-01-03"])})
    out = join_market(rows, None, CONFIG)
    assert list(out.columns) == market_feature_columns(CONFIG)
    assert (out.filter(like="_missing") == 1).all().all()
    assert (out.drop(columns=out.filter(like="_missing").columns) == 0).all().all()
