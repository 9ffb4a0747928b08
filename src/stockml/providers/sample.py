"""The embedded real data that ships with arch and pmdarima: runs offline, no key.

``^GSPC`` and ``^IXIC``: arch.data.sp500 / nasdaq (1999-01-04..2018-12-31, OHLC, Adj Close,
volume). ``^VIX``: arch.data.vix (2014-01-03..2019-01-03, close only: open = high = low =
close, volume NaN; the file's NaN rows on NYSE holidays are dropped). ``MSFT``: pmdarima's load_msft (1986-03-13..2017-11-10, split-adjusted
OHLC, no Adj Close: adj_close = close).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from functools import cache

import pandas as pd

from stockml.errors import UnknownSymbolError
from stockml.providers.base import Provider, RetryPolicy
from stockml.providers.csv import yahoo_style_to_bars


def _sp500() -> pd.DataFrame:
    from arch.data import sp500

    return sp500.load()


def _nasdaq() -> pd.DataFrame:
    from arch.data import nasdaq

    return nasdaq.load()


def _vix() -> pd.DataFrame:
    from arch.data import vix

    # the file carries a NaN row on every NYSE holiday: those days are not sessions, not bars
    return vix.load().rename(columns={"vix": "Close"}).dropna(subset=["Close"])


def _msft() -> pd.DataFrame:
    from pmdarima.datasets import load_msft

    return load_msft()


_LOADERS: dict[str, Callable[[], pd.DataFrame]] = {
    "^GSPC": _sp500,
    "^IXIC": _nasdaq,
    "^VIX": _vix,
    "MSFT": _msft,
}
SAMPLE_SYMBOLS: list[str] = list(_LOADERS)


@cache
def _load(symbol: str) -> pd.DataFrame:
    # loaded once per process: the files are small and never change
    return yahoo_style_to_bars(_LOADERS[symbol](), symbol, SampleProvider.name)


class SampleProvider(Provider):
    """Bars of ``^GSPC``, ``^IXIC``, ``^VIX`` and ``MSFT`` from the embedded datasets."""

    name = "sample"

    def __init__(self, retry: RetryPolicy | None = None) -> None:
        super().__init__(retry=retry)

    def _fetch_bars(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        if symbol not in _LOADERS:
            raise UnknownSymbolError(f"sample has no {symbol!r}; it has {SAMPLE_SYMBOLS}")
        return _load(symbol).copy()
