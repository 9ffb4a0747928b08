"""Hand-made valid bars on NYSE sessions, for store and ingestion tests."""

from __future__ import annotations

import pandas as pd

from stockml.calendar import sessions
from stockml.schemas import BAR_COLUMNS


def make_bars(
    symbol: str, start: str, end: str, base: float = 100.0, source: str = "test"
) -> pd.DataFrame:
    """Valid bars of ``symbol`` on every NYSE session in ``[start, end]``, drifting up 0.5 a day.

    Every day has distinct prices, so a lost, duplicated or stale row is visible.
    """
    days = sessions(start, end)
    close = base + 0.5 * pd.RangeIndex(len(days)).to_numpy()
    return pd.DataFrame(
        {
            "symbol": symbol,
            "date": days,
            "open": close - 0.2,
            "high": close + 1.0,
            "low": close - 1.0,
            "close": close,
            "adj_close": close * 0.98,
            "volume": 1_000_000.0,
            "source": source,
        }
    )[BAR_COLUMNS]
