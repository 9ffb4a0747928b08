"""``build_features``: raw bars (+ market bars, + news) -> one feature frame with targets.

The same function feeds training (the whole history) and the stored ``features/`` table the API
reads, so training and serving compute features with exactly the same code.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from stockml.errors import FeatureError
from stockml.features.config import FeatureConfig
from stockml.features.cross_section import (
    cross_section_columns,
    cross_section_features,
    symbol_signals,
)
from stockml.features.indicators import price_feature_columns, price_features
from stockml.features.market import join_market, market_feature_columns
from stockml.features.sentiment import join_news, news_feature_columns
from stockml.features.targets import forward_log_returns, target_columns
from stockml.progress import ProgressFn

logger = logging.getLogger(__name__)

ID_COLUMNS = ["symbol", "date", "close", "adj_close"]
_REQUIRED = ["symbol", "date", "open", "high", "low", "close", "adj_close", "volume"]
_PRICES = ["open", "high", "low", "close", "adj_close"]


def feature_columns(config: FeatureConfig | None = None) -> list[str]:
    """Every feature column ``build_features`` returns, in order (targets excluded)."""
    config = config or FeatureConfig()
    return (
        price_feature_columns(config)
        + market_feature_columns(config)
        + news_feature_columns(config)
        + cross_section_columns(config)
    )


def build_features(
    bars: pd.DataFrame,
    market: pd.DataFrame | None = None,
    news: pd.DataFrame | None = None,
    config: FeatureConfig | None = None,
    progress: ProgressFn | None = None,
) -> pd.DataFrame:
    """Features and targets of one or more symbols: per symbol, then across them per date.

    Every feature but the cross-sectional ones (``xs_*``, :mod:`stockml.features.cross_section`)
    is computed per symbol from that symbol's bars alone. The ``xs_*`` columns rank each
    symbol against the other symbols of ``bars`` on the same date (0 when there are too few).

    Prices are adjusted first: ``open/high/low`` are scaled by ``adj_close / close`` so splits and
    dividends do not look like moves. Every feature is scale-free (ratios, returns, z-scores).

    Warm-up rows, where some indicator is still undefined, are DROPPED (never filled, least of
    all from the future): each symbol's output starts ``config.warmup_rows()`` rows after its
    first bar. Targets stay NaN in each symbol's last ``h`` rows.

    Args:
        bars: bar-schema rows (``symbol, date, open, high, low, close, adj_close, volume``);
            ``volume`` may be NaN (indices).
        market: bars of ``config.market.symbols`` (same store), or None: market columns are
            then 0 and flagged missing.
        news: NEWS_COLUMNS rows, or None: sentiment 0, count 0.
        config: the feature configuration (default: code defaults).
        progress: called as ``progress("features", symbols done, symbols)``.

    Returns:
        ``symbol, date, close, adj_close, <feature_columns(config)>, <target_columns(config)>``,
        sorted by symbol and date; features are float64 and never NaN.

    Raises:
        FeatureError: empty input, missing columns, NaN or non-positive prices, duplicate
            dates, a symbol too short for the warm-up, or a feature undefined after warm-up.
    """
    config = config or FeatureConfig()
    frame = _checked(bars, config)
    symbols = frame["symbol"].to_numpy(dtype=object)
    starts = np.flatnonzero(np.r_[True, symbols[1:] != symbols[:-1]])
    ends = np.r_[starts[1:], len(frame)]
    ratio = frame["adj_close"] / frame["close"]
    adjusted = pd.DataFrame(
        {
            "adj_high": frame["high"] * ratio,
            "adj_low": frame["low"] * ratio,
            "adj_close": frame["adj_close"],
            "volume": frame["volume"],
        }
    )
    features = feature_columns(config)
    price_cols = price_feature_columns(config)
    xs_cols = cross_section_columns(config)
    per_symbol = len(features) - len(xs_cols)
    # column-major: every column is written and read out contiguously
    matrix = np.empty((len(frame), len(features)), order="F")
    targets = np.empty((len(frame), config.horizon), order="F")
    signals: dict[str, np.ndarray] = {}
    for i, (lo, hi) in enumerate(zip(starts, ends, strict=True)):
        one = adjusted.iloc[lo:hi]
        values = price_features(one, config)
        for j, col in enumerate(price_cols):
            matrix[lo:hi, j] = values[col]
        targets[lo:hi] = forward_log_returns(one["adj_close"].to_numpy(), config.horizon)
        if xs_cols:
            raw = symbol_signals(
                one["adj_close"].to_numpy(),
                frame["close"].to_numpy()[lo:hi],
                one["volume"].to_numpy(),
                config.cross_section,
            )
            for key, arr in raw.items():
                signals.setdefault(key, np.empty(len(frame)))[lo:hi] = arr
        if progress is not None:
            progress("features", i + 1, len(starts))
    context = pd.concat(
        [join_market(frame, market, config), join_news(frame, news, config)], axis=1
    )
    for j, col in enumerate(features[len(price_cols) : per_symbol], start=len(price_cols)):
        matrix[:, j] = context[col].to_numpy()
    defined = np.ones(len(frame), dtype=bool)
    for j in range(per_symbol):
        defined &= ~np.isnan(matrix[:, j])
    # warm-up rows come first in each symbol; a gap later means bad input, not warm-up
    started = _started(defined, starts)
    if (started & ~defined).any():
        bad = frame.loc[started & ~defined, ["symbol", "date"]].head(3).to_dict("records")
        raise FeatureError(f"features undefined after warm-up (e.g. {bad}): check the input bars")
    if xs_cols:
        # the peers of a date are the rows output for it: warm-up rows take no part
        peers = defined & ~np.isin(symbols, list(config.market.symbols))
        dates = frame["date"].to_numpy()
        xs = cross_section_features(
            dates[defined], peers[defined], {k: v[defined] for k, v in signals.items()}, config
        )
        for j, col in enumerate(xs_cols, start=per_symbol):
            matrix[:, j] = 0.0
            matrix[defined, j] = xs[col]
    if any(np.isinf(matrix[:, j]).any() for j in range(len(features))):
        raise FeatureError("features hold inf: check the input bars")
    ids = pd.DataFrame(
        {"symbol": symbols[defined], **{c: frame[c].to_numpy()[defined] for c in ID_COLUMNS[1:]}}
    )
    # one 2-D float block each: no per-column consolidation copies
    block = pd.DataFrame(matrix[defined], columns=features)
    future = pd.DataFrame(targets[defined], columns=target_columns(config))
    return pd.concat([ids, block, future], axis=1)


def _started(defined: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """True from each symbol's first fully defined row on (symbols start at ``starts``)."""
    group = np.cumsum(np.isin(np.arange(len(defined)), starts)) - 1
    first = np.full(len(starts), np.iinfo(np.int64).max)
    np.minimum.at(first, group[defined], np.flatnonzero(defined))
    return np.arange(len(defined)) >= first[group]


def _checked(bars: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """Bars sorted by (symbol, date) in float64, or a FeatureError saying what is wrong."""
    if bars is None or not isinstance(bars, pd.DataFrame) or bars.empty:
        raise FeatureError("no bars: cannot compute features from an empty frame")
    missing = [c for c in _REQUIRED if c not in bars.columns]
    if missing:
        raise FeatureError(f"bars are missing columns {missing}")
    frame = bars[_REQUIRED].copy()
    frame["symbol"] = frame["symbol"].astype(str)
    frame["date"] = pd.to_datetime(frame["date"]).astype("datetime64[ns]")
    for col in [*_PRICES, "volume"]:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    nan_rows = frame[_PRICES].isna().any(axis=1) | frame["date"].isna()
    if nan_rows.any():
        sample = frame.loc[nan_rows, ["symbol", "date"]].head(3).to_dict("records")
        raise FeatureError(f"{int(nan_rows.sum())} bars hold NaN prices or dates (e.g. {sample})")
    if (frame[_PRICES] <= 0).any().any():
        raise FeatureError("bars hold non-positive prices")
    frame = frame.sort_values(["symbol", "date"], kind="mergesort").reset_index(drop=True)
    if frame.duplicated(["symbol", "date"]).any():
        raise FeatureError("bars hold duplicate (symbol, date) rows")
    counts = frame.groupby("symbol").size()
    short = counts[counts <= config.warmup_rows()]
    if len(short):
        raise FeatureError(
            f"too few bars for the {config.warmup_rows()}-row warm-up: {short.to_dict()}"
        )
    return frame
