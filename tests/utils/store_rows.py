"""Universes of hand-made bars as provider CSV files, and the row count that checks a store.

Shared by the tests where writers race or fail: whatever happened, a fresh reader must see
every expected row once, with the expected values (:func:`assert_stored_exactly`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from stockml.settings import StoreSettings
from stockml.storage import Store
from utils.bars import make_bars

# the bar schema's columns under Yahoo's CSV headers, as the csv provider reads them
YAHOO_COLUMNS = {
    "date": "Date",
    "open": "Open",
    "high": "High",
    "low": "Low",
    "close": "Close",
    "adj_close": "Adj Close",
    "volume": "Volume",
}


def universe(n: int, start: str, end: str) -> dict[str, pd.DataFrame]:
    """Bars of ``n`` symbols ``S00, S01, ...`` on every session in ``[start, end]``."""
    return {f"S{i:02d}": make_bars(f"S{i:02d}", start, end, base=10.0 + 3 * i) for i in range(n)}


def write_csv(folder: Path, bars: dict[str, pd.DataFrame]) -> None:
    """One ``<SYMBOL>.csv`` per symbol, as the csv provider reads them (Yahoo's columns)."""
    folder.mkdir(exist_ok=True)
    for symbol, frame in bars.items():
        out = frame.rename(columns=YAHOO_COLUMNS)
        out[list(YAHOO_COLUMNS.values())].to_csv(folder / f"{symbol}.csv", index=False)


def assert_stored_exactly(store_settings: StoreSettings, expected: dict[str, pd.DataFrame]) -> None:
    """A fresh reader sees every expected row once, with the expected values."""
    back = Store.from_settings(store_settings).read_bars(sorted(expected))
    want = pd.concat(expected.values(), ignore_index=True).sort_values(["symbol", "date"])
    dup = back[back.duplicated(["symbol", "date"], keep=False)]
    assert dup.empty, f"{len(dup)} rows stored twice, e.g.\n{dup.head(6)}"
    assert len(back) == len(want), (len(back), len(want))
    cols = ["symbol", "date", "open", "high", "low", "close", "adj_close", "volume"]
    pd.testing.assert_frame_equal(
        back[cols].reset_index(drop=True), want[cols].reset_index(drop=True), check_dtype=False
    )
    summary = Store.from_settings(store_settings).summary().set_index("symbol")
    assert (summary["rows"] == want.groupby("symbol").size()).all()
