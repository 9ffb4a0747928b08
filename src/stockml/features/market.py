"""Market context: index returns, volatility and VIX, joined to a symbol's rows AS OF its date.

Each index is first turned into features on ITS OWN calendar (its returns are over its own
previous bar), then joined with ``pd.merge_asof(direction="backward")``: a row dated ``t``
sees the index's latest bar dated ``<= t``, never a later one. How old that bar is, counted in
NYSE sessions, decides what the row gets:

- age 0: the value, flags 0;
- 1 .. ``max_ffill_sessions``: the value carried forward, ``<name>_stale = 1``;
- older, or no bar at all: neutral 0 and ``<name>_missing = 1`` (not NaN, so e.g. stock rows
  before the index's history starts are kept).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from stockml.calendar import sessions
from stockml.errors import FeatureError
from stockml.features.config import FeatureConfig, market_name

logger = logging.getLogger(__name__)

_INDEX_FEATURES = ("ret_1", "ret_5", "vol_20")
_VOL_INDEX_FEATURES = ("level", "change_1", "change_5")


def market_feature_columns(config: FeatureConfig) -> list[str]:
    """Names of the market-context columns, in output order."""
    cols: list[str] = []
    for symbol in config.market.symbols:
        name = market_name(symbol)
        kinds = (
            _VOL_INDEX_FEATURES if symbol in config.market.volatility_symbols else _INDEX_FEATURES
        )
        cols += [f"mkt_{name}_{kind}" for kind in kinds]
        cols += [f"mkt_{name}_stale", f"mkt_{name}_missing"]
    return cols


def _index_features(series: pd.DataFrame, symbol: str, config: FeatureConfig) -> pd.DataFrame:
    """Features of one index on its own dates (``date``, ``close``)."""
    name = market_name(symbol)
    close = series["close"]
    log_close = np.log(close)
    if symbol in config.market.volatility_symbols:
        values = {
            # VIX is quoted in annualised percent points: /100 puts it on the returns' scale
            f"mkt_{name}_level": close / 100.0,
            f"mkt_{name}_change_1": log_close.diff(1),
            f"mkt_{name}_change_5": log_close.diff(5),
        }
    else:
        daily = log_close.diff(1)
        values = {
            f"mkt_{name}_ret_1": daily,
            f"mkt_{name}_ret_5": log_close.diff(5),
            f"mkt_{name}_vol_20": daily.rolling(20, min_periods=20).std(),
        }
    out = pd.DataFrame(values)
    out.insert(0, "date", series["date"].to_numpy())
    # an index row is usable once all its features are defined (its own warm-up)
    return out.dropna().reset_index(drop=True)


def _session_ordinal(dates: pd.DatetimeIndex, grid: pd.DatetimeIndex) -> np.ndarray:
    """Position of each date in the NYSE session grid (a non-session date counts as the previous)."""
    return np.asarray(grid.searchsorted(dates, side="right")) - 1


def join_market(
    rows: pd.DataFrame, market: pd.DataFrame | None, config: FeatureConfig
) -> pd.DataFrame:
    """Market columns for ``rows`` (``date`` column, any symbols), aligned with ``rows.index``.

    Args:
        rows: the rows to enrich; only ``date`` is read.
        market: bars of the market symbols (bar schema; ``close`` is used), or None.
        config: market symbols and the forward-fill bound.

    Returns:
        ``market_feature_columns(config)`` for every row, never NaN.
    """
    cols = market_feature_columns(config)
    out = {c: np.zeros(len(rows)) for c in cols}
    if market is None or market.empty:
        if config.market.symbols:
            logger.warning("no market bars: market features are neutral and flagged missing")
        for symbol in config.market.symbols:
            out[f"mkt_{market_name(symbol)}_missing"][:] = 1.0
        return pd.DataFrame(out, index=rows.index)
    if not {"symbol", "date", "close"} <= set(market.columns):
        raise FeatureError("market bars need symbol, date and close columns")
    # a NaN or non-positive close is a missing day: the as-of join carries the last good one
    market = market[market["close"].notna() & (market["close"] > 0)]
    dates = pd.DatetimeIndex(pd.to_datetime(rows["date"])).astype("datetime64[ns]")
    market_dates = pd.to_datetime(market["date"]).astype("datetime64[ns]")
    lo = min(dates.min(), market_dates.min()) if len(market) else dates.min()
    hi = max(dates.max(), market_dates.max()) if len(market) else dates.max()
    grid = sessions(lo - pd.Timedelta(days=10), hi)
    row_ord = _session_ordinal(dates, grid)
    bound = config.market.max_ffill_sessions
    for symbol in config.market.symbols:
        name = market_name(symbol)
        series = pd.DataFrame(
            {
                "date": market_dates[market["symbol"] == symbol],
                "close": market.loc[market["symbol"] == symbol, "close"],
            }
        ).sort_values("date")
        feats = _index_features(series.reset_index(drop=True), symbol, config)
        if feats.empty:
            out[f"mkt_{name}_missing"][:] = 1.0
            continue
        src_dates = pd.DatetimeIndex(feats["date"])
        # as-of, backward: the index's latest bar dated <= the row's date, never a later one
        pos = src_dates.searchsorted(dates, side="right") - 1
        found = pos >= 0
        age = np.where(
            found,
            row_ord - _session_ordinal(src_dates[np.maximum(pos, 0)], grid),
            np.iinfo(np.int64).max,
        )
        usable = found & (age <= bound)
        for col in feats.columns.drop("date"):
            out[col] = np.where(usable, feats[col].to_numpy()[np.maximum(pos, 0)], 0.0)
        out[f"mkt_{name}_stale"] = (usable & (age > 0)).astype("float64")
        out[f"mkt_{name}_missing"] = (~usable).astype("float64")
    return pd.DataFrame(out, index=rows.index)
