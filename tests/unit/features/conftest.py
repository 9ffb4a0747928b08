"""Real price series for the feature tests, from the data embedded in arch and pmdarima."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stockml.schemas import BAR_COLUMNS


def _yahoo_frame(frame: pd.DataFrame, symbol: str) -> pd.DataFrame:
    out = frame.reset_index().rename(
        columns={
            "Date": "date",
            "Open": "open",
            "High": "high",
            "Low": "low",
            "Close": "close",
            "Adj Close": "adj_close",
            "Volume": "volume",
        }
    )
    out["symbol"] = symbol
    out["source"] = "arch"
    out["date"] = pd.to_datetime(out["date"]).astype("datetime64[ns]")
    return out[BAR_COLUMNS]


@pytest.fixture(scope="session")
def msft_bars() -> pd.DataFrame:
    """MSFT daily bars 1986-2017 (pmdarima; split-adjusted, no dividends: adj_close = close)."""
    from pmdarima.datasets import load_msft

    raw = load_msft()
    return pd.DataFrame(
        {
            "symbol": "MSFT",
            "date": pd.to_datetime(raw["Date"]).astype("datetime64[ns]"),
            "open": raw["Open"],
            "high": raw["High"],
            "low": raw["Low"],
            "close": raw["Close"],
            "adj_close": raw["Close"],
            "volume": raw["Volume"].astype("float64"),
            "source": "pmdarima",
        }
    )[BAR_COLUMNS]


@pytest.fixture(scope="session")
def market_bars() -> pd.DataFrame:
    """^GSPC and ^IXIC 1999-2018 and ^VIX 2014-2019 (close only, no volume) from arch."""
    from arch.data import nasdaq, sp500, vix

    vix_close = vix.load()["vix"]
    vix_frame = pd.DataFrame(
        {
            "symbol": "^VIX",
            "date": pd.to_datetime(vix_close.index).astype("datetime64[ns]"),
            "open": vix_close.to_numpy(),
            "high": vix_close.to_numpy(),
            "low": vix_close.to_numpy(),
            "close": vix_close.to_numpy(),
            "adj_close": vix_close.to_numpy(),
            "volume": np.nan,
            "source": "arch",
        }
    ).dropna(subset=["close"])
    return pd.concat(
        [_yahoo_frame(sp500.load(), "^GSPC"), _yahoo_frame(nasdaq.load(), "^IXIC"), vix_frame],
        ignore_index=True,
    )
