"""A small synthetic universe: random-walk bars of many symbols on NYSE sessions.

Every symbol has its own seed, so no two series (or their signals) tie; ``late`` symbols list
later and ``gaps`` symbols miss a few sessions, as real universes do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stockml.calendar import sessions
from stockml.schemas import BAR_COLUMNS


def make_universe(
    n_symbols: int = 12,
    start: str = "2016-01-04",
    end: str = "2017-06-30",
    seed: int = 0,
    late: int = 0,
    gaps: int = 0,
) -> pd.DataFrame:
    """Bars of ``U00 .. U<n-1>`` (bar schema), sorted by symbol and date.

    Args:
        n_symbols: how many symbols.
        start: first session; end: last session.
        seed: the random seed (symbol i uses ``seed + i``).
        late: the last ``late`` symbols start a third of the way into the range.
        gaps: the first ``gaps`` symbols miss every 37th session.
    """
    days = sessions(start, end)
    frames = []
    for i in range(n_symbols):
        rng = np.random.default_rng(seed + i)
        n = len(days)
        log_ret = rng.normal(0.0003 * (i % 5), 0.01 + 0.002 * i, n)
        close = 20.0 * (1 + i) * np.exp(np.cumsum(log_ret))
        spread = np.abs(rng.normal(0, 0.01, n)) * close
        frame = pd.DataFrame(
            {
                "symbol": f"U{i:02d}",
                "date": days,
                "open": close * np.exp(rng.normal(0, 0.003, n)),
                "high": close + spread + 0.05,
                "low": np.maximum(close - spread - 0.05, 0.01),
                "close": close,
                "adj_close": close * (0.97 + 0.001 * i),
                "volume": rng.lognormal(13 + 0.3 * i, 0.4, n).round(),
                "source": "synthetic",
            }
        )
        frame["high"] = frame[["open", "high", "close"]].max(axis=1)
        frame["low"] = frame[["open", "low", "close"]].min(axis=1)
        if i >= n_symbols - late:
            frame = frame.iloc[n // 3 :]
        if i < gaps:
            frame = frame[np.arange(len(frame)) % 37 != 36]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)[BAR_COLUMNS]
