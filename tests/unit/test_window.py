"""The feature window: what serving reads instead of the features table."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from stockml.errors import FeatureError
from stockml.window import BAR_FIELDS, FeatureWindow, latest_keys, parse_window_key, window_key


def frame(rows: int = 5, symbol: str = "^GSPC") -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "symbol": symbol,
            "date": pd.bdate_range("2024-01-02", periods=rows),
            "close": rng.normal(100, 1, rows),
            "a": rng.normal(size=rows),
            "b": rng.normal(size=rows) * 1e-12,
        }
    )


def test_round_trip_is_exact() -> None:
    # GIVEN a window built from table rows, given out of order
    f = frame()
    window = FeatureWindow.from_frame(f.iloc[::-1], ["b", "a"])
    # WHEN written and read back
    back = FeatureWindow.from_bytes(window.to_bytes())
    # THEN every value, date and name is the same, in date order
    assert back.symbol == "^GSPC" and back.columns == ("b", "a")
    np.testing.assert_array_equal(back.values, f[["b", "a"]].to_numpy())
    np.testing.assert_array_equal(back.close, f["close"].to_numpy())
    assert back.dates.tolist() == [d.date() for d in f["date"]]
    assert back.last_date == date(2024, 1, 8) and back.last_close == f["close"].iloc[-1]
    np.testing.assert_array_equal(back.tail(2).matrix(["a"]), f[["a"]].to_numpy()[-2:])


def test_bad_windows_are_refused() -> None:
    with pytest.raises(FeatureError, match="unreadable"):
        FeatureWindow.from_bytes(b"not a window")
    with pytest.raises(FeatureError, match="unreadable"):
        FeatureWindow.from_bytes(FeatureWindow.from_frame(frame(), ["a"]).to_bytes()[:-40])
    with pytest.raises(FeatureError, match="strictly increasing"):
        FeatureWindow.from_frame(pd.concat([frame(3), frame(3)]), ["a"])
    with pytest.raises(FeatureError, match="one symbol"):
        FeatureWindow.from_frame(pd.concat([frame(3), frame(3, "MSFT")]), ["a"])
    with pytest.raises(FeatureError, match="missing columns"):
        FeatureWindow.from_frame(frame(), ["a"]).matrix(["a", "zzz"])


def test_keys_name_symbol_and_last_date() -> None:
    key = window_key("features", "^GSPC", date(2017, 11, 10))
    assert key == "features/_latest/symbol=%5EGSPC/20171110.npz"
    assert parse_window_key("features", key) == ("^GSPC", date(2017, 11, 10))
    assert parse_window_key("features", "features/year=2017/symbol=MSFT/part-x.parquet") is None
    older = window_key("features", "^GSPC", date(2017, 11, 9))
    assert latest_keys("features", [key, older, "features/_latest/junk"]) == {
        "^GSPC": (date(2017, 11, 10), key)
    }


def test_raw_bars_ride_along_and_old_windows_still_load() -> None:
    # GIVEN table rows joined with their raw bars (open, high, low, volume; one unknown)
    f = frame()
    f["open"], f["high"], f["low"] = f["close"] - 1, f["close"] + 2, f["close"] - 3
    f["volume"] = [1e6, 2e6, np.nan, 4e6, 5e6]
    window = FeatureWindow.from_frame(f.iloc[::-1], ["a"])
    # WHEN written and read back
    back = FeatureWindow.from_bytes(window.to_bytes())
    # THEN the bars come back in date order, exactly, NaN included; tail keeps them aligned
    assert back.bars is not None
    np.testing.assert_array_equal(back.bars, f[list(BAR_FIELDS)].to_numpy())
    np.testing.assert_array_equal(back.tail(2).bars, f[list(BAR_FIELDS)].to_numpy()[-2:])
    # AND a window written without bars (as before they existed) loads with none
    plain = FeatureWindow.from_bytes(FeatureWindow.from_frame(frame(), ["a"]).to_bytes())
    assert plain.bars is None and plain.tail(2).bars is None
    # AND bars of the wrong shape are refused
    with pytest.raises(FeatureError, match="bars"):
        FeatureWindow(
            back.symbol, back.dates, back.close, back.columns, back.values, back.bars[1:]
        ).check()
