"""Market context: index returns, volatility and VIX on the equity session grid (NYSE).

Each index is first laid on the exchange's session grid: the value for session ``s`` is the
index bar dated ``s`` (its value as of that session's close). Rows dated on days the exchange
is closed (CBOE publishes VIX on some of them; any vendor can send one) are ignored, so they
never shift a feature. Changes are then taken between CONSECUTIVE exchange sessions: ``ret_1``
at ``s`` is ``log(close_s / close_{s-1})``, ``ret_5`` spans exactly five sessions, and
``vol_20`` is the standard deviation of the 1-session returns defined among the last 20
sessions (at least ``VOL_MIN_RETURNS`` of them; a missing session removes returns from the
sample, it never makes one return span two sessions).

A session's features of one index are one snapshot. It is FRESH when every index value it is
computed from is that exchange session's own value. Otherwise (the session's bar is missing,
or a change would span a missing session: sessions ``d``, ``d + 1`` and ``d + 5`` after a
missing ``d``) the row carries the last fresh snapshot:

- age 0: the session's own values, flags 0;
- 1 .. ``max_ffill_sessions`` sessions old: the snapshot carried forward, ``<name>_stale = 1``;
- older, or none yet: neutral 0 and ``<name>_missing = 1`` (not NaN, so e.g. stock rows
  before the index's history starts are kept).

Rows are joined by their session: a row dated on a non-session day takes the latest session
before it, never a later one (no look-ahead).
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
VOL_WINDOW = 20
# fewest 1-session returns in the 20-session window that give a volatility: a few missing
# index sessions thin the sample instead of blanking three weeks of features
VOL_MIN_RETURNS = 15


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


def _shift(values: np.ndarray, k: int) -> np.ndarray:
    """``values`` moved ``k`` sessions later along the grid (NaN where nothing precedes)."""
    out = np.full_like(values, np.nan)
    out[k:] = values[:-k]
    return out


def _grid_features(close: np.ndarray, symbol: str, config: FeatureConfig) -> dict[str, np.ndarray]:
    """Features of one index on the session grid from its close per session (NaN: no bar)."""
    name = market_name(symbol)
    log_close = np.log(close)
    if symbol in config.market.volatility_symbols:
        return {
            # VIX is quoted in annualised percent points: /100 puts it on the returns' scale
            f"mkt_{name}_level": close / 100.0,
            f"mkt_{name}_change_1": log_close - _shift(log_close, 1),
            f"mkt_{name}_change_5": log_close - _shift(log_close, 5),
        }
    daily = log_close - _shift(log_close, 1)
    # pandas' rolling std skips NaN and counts only defined returns towards min_periods
    vol = pd.Series(daily).rolling(VOL_WINDOW, min_periods=VOL_MIN_RETURNS).std().to_numpy()
    return {
        f"mkt_{name}_ret_1": daily,
        f"mkt_{name}_ret_5": log_close - _shift(log_close, 5),
        f"mkt_{name}_vol_20": vol,
    }


def _close_on_grid(series: pd.DataFrame, grid: pd.DatetimeIndex, symbol: str) -> np.ndarray:
    """The index's close per grid session (NaN where it has no bar); other rows are dropped."""
    series = series.drop_duplicates("date", keep="last")
    pos = grid.get_indexer(pd.DatetimeIndex(series["date"]))
    off = pos < 0
    if off.any():
        example = pd.Timestamp(series["date"].to_numpy()[off][0]).date()
        # a value dated when the exchange is closed belongs to no session: using it would
        # shift the next session's change onto a different base
        logger.info(
            "%s: %d rows dated on non-session days ignored (e.g. %s)",
            symbol,
            int(off.sum()),
            example,
        )
    close = np.full(len(grid), np.nan)
    close[pos[~off]] = series["close"].to_numpy(dtype="float64")[~off]
    return close


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
    # a NaN or non-positive close is a missing session
    market = market[market["close"].notna() & (market["close"] > 0)]
    dates = pd.DatetimeIndex(pd.to_datetime(rows["date"])).astype("datetime64[ns]").normalize()
    market_dates = pd.to_datetime(market["date"]).astype("datetime64[ns]").dt.normalize()
    lo = min(dates.min(), market_dates.min()) if len(market) else dates.min()
    hi = max(dates.max(), market_dates.max()) if len(market) else dates.max()
    grid = sessions(lo - pd.Timedelta(days=10), hi)
    # the session each row belongs to: its own, or the latest before a non-session date
    row_session = np.asarray(grid.searchsorted(dates, side="right")) - 1
    bound = config.market.max_ffill_sessions
    for symbol in config.market.symbols:
        name = market_name(symbol)
        mine = (market["symbol"] == symbol).to_numpy()
        series = pd.DataFrame(
            {"date": market_dates[mine].to_numpy(), "close": market.loc[mine, "close"].to_numpy()}
        ).sort_values("date", kind="mergesort")
        feats = _grid_features(_close_on_grid(series, grid, symbol), symbol, config)
        fresh = np.logical_and.reduce([~np.isnan(v) for v in feats.values()])
        # the latest fresh session at or before each grid session (-1: none yet)
        last_fresh = np.maximum.accumulate(np.where(fresh, np.arange(len(grid)), -1))
        source = np.where(row_session >= 0, last_fresh[np.maximum(row_session, 0)], -1)
        age = row_session - source
        usable = (source >= 0) & (age <= bound)
        take = np.maximum(source, 0)
        for col, values in feats.items():
            out[col] = np.where(usable, values[take], 0.0)
        out[f"mkt_{name}_stale"] = (usable & (age > 0)).astype("float64")
        out[f"mkt_{name}_missing"] = (~usable).astype("float64")
    return pd.DataFrame(out, index=rows.index)
