"""Cross-sectional features: each symbol's signals against the universe on the same date.

The literature's daily edge is relative (which stocks do better than the others tomorrow), so
besides the per-symbol indicators the library computes, per date and across the symbols
computed together (the *peers*: every symbol of the run except the market series of
``config.market.symbols``):

- ``xs_logret_k``: the rank of the k-session log return (short-term reversal, k = 1 and 5);
- ``xs_excess_logret_k``: that return minus the peers' equal-weight mean of the same date
  (the return relative to the market);
- ``xs_momentum``: the rank of the log return from ``momentum_lookback`` to ``momentum_skip``
  sessions ago (12-1 momentum);
- ``xs_volatility``: the rank of the std of daily log returns;
- ``xs_dollar_volume`` / ``xs_amihud``: the ranks of the log mean dollar volume (close x
  volume) and of the log Amihud illiquidity (mean of |daily return| / dollar volume).

"Rank" is the centred percentile in ``[-0.5, 0.5]`` (ties averaged), or with
``normalize: zscore`` the z-score clipped to +-3. A peer whose signal is undefined (a history
shorter than the momentum lookback, no volume) is left out of that date and gets 0, as do
the market series and every row of a date with fewer than ``min_peers`` peers: in a
single-symbol run every cross-sectional column is 0.

Causal by construction: a symbol's signals at ``t`` read its rows ``<= t``, and the peers of
date ``t`` are the rows the library outputs for ``t`` (after each symbol's warm-up), which
depend on nothing later. A new date's values depend on every peer of that date, so the feature
pipeline computes them over the whole universe (:mod:`stockml.features.pipeline`); serving
only reads the stored rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stockml.features.config import CrossSectionConfig, FeatureConfig
from stockml.features.indicators import diff, rolling_mean, rolling_std

_CLIP_Z = 3.0


def cross_section_columns(config: FeatureConfig) -> list[str]:
    """Names of the cross-sectional columns, in output order (none when disabled)."""
    cs = config.cross_section
    if not cs.enabled:
        return []
    cols = [f"xs_logret_{k}" for k in cs.reversal_windows]
    cols += [f"xs_excess_logret_{k}" for k in cs.reversal_windows]
    return cols + ["xs_momentum", "xs_volatility", "xs_dollar_volume", "xs_amihud"]


def symbol_signals(
    adj_close: np.ndarray, close: np.ndarray, volume: np.ndarray, cs: CrossSectionConfig
) -> dict[str, np.ndarray]:
    """The raw signals of ONE symbol (rows sorted by date); NaN where undefined.

    Args:
        adj_close: adjusted closes (returns, momentum, volatility).
        close: raw closes (dollars traded = close x volume).
        volume: shares traded; NaN or <= 0 means unknown.
        cs: the windows.
    """
    n = len(adj_close)
    log_close = np.log(adj_close)
    daily = diff(log_close)
    out = {f"logret_{k}": diff(log_close, k) for k in cs.reversal_windows}
    momentum = np.full(n, np.nan)
    lookback, skip = cs.momentum_lookback, cs.momentum_skip
    if n > lookback:
        momentum[lookback:] = log_close[lookback - skip : n - skip] - log_close[: n - lookback]
    out["momentum"] = momentum
    # the first daily return is undefined: windows start at the second row
    out["volatility"] = np.r_[np.nan, rolling_std(daily[1:], cs.volatility_window)]
    dollars = np.where(np.isfinite(volume) & (volume > 0), close * volume, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["dollar_volume"] = np.log(rolling_mean(dollars, cs.liquidity_window))
        out["amihud"] = np.log(rolling_mean(np.abs(daily) / dollars, cs.liquidity_window))
    # log(0) (no move at all in the window) says nothing about liquidity: undefined
    for key in ("dollar_volume", "amihud"):
        out[key][~np.isfinite(out[key])] = np.nan
    return out


def cross_section_features(
    dates: np.ndarray, peers: np.ndarray, signals: dict[str, np.ndarray], config: FeatureConfig
) -> dict[str, np.ndarray]:
    """Per-date transforms of ``signals`` over the ``peers`` rows; never NaN.

    Args:
        dates: the date of each row (the library's output rows, any symbols).
        peers: True for the rows that form and get the cross-section.
        signals: ``symbol_signals`` keys -> one value per row.
        config: ``cross_section`` windows, normalisation, ``min_peers``.

    Returns:
        ``cross_section_columns(config)`` -> one value per row.
    """
    cs = config.cross_section
    codes = pd.factorize(np.asarray(dates))[0]
    out: dict[str, np.ndarray] = {}
    for k in cs.reversal_windows:
        values = signals[f"logret_{k}"]
        out[f"xs_logret_{k}"] = _normalised(values, codes, peers, cs)
        out[f"xs_excess_logret_{k}"] = _excess(values, codes, peers, cs.min_peers)
    for key in ("momentum", "volatility", "dollar_volume", "amihud"):
        out[f"xs_{key}"] = _normalised(signals[key], codes, peers, cs)
    return out


def _grouped(
    values: np.ndarray, codes: np.ndarray, peers: np.ndarray, min_peers: int
) -> tuple[np.ndarray, pd.core.groupby.SeriesGroupBy, np.ndarray]:
    """The usable rows, their per-date groups, and whether each row's date has enough peers."""
    usable = peers & np.isfinite(values)
    series = pd.Series(values[usable])
    groups = series.groupby(codes[usable], sort=False)
    enough = groups.transform("size").to_numpy() >= min_peers
    return usable, groups, enough


def _normalised(
    values: np.ndarray, codes: np.ndarray, peers: np.ndarray, cs: CrossSectionConfig
) -> np.ndarray:
    out = np.zeros(len(values))
    usable, groups, enough = _grouped(values, codes, peers, cs.min_peers)
    if not usable.any():
        return out
    if cs.normalize == "rank":
        rank = groups.rank(method="average").to_numpy()
        size = groups.transform("size").to_numpy().astype("float64")
        with np.errstate(divide="ignore", invalid="ignore"):
            value = (rank - 1.0) / (size - 1.0) - 0.5
    else:
        x = groups.obj.to_numpy()
        mean = groups.transform("mean").to_numpy()
        std = groups.transform("std", ddof=0).to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.clip(np.where(std > 0, (x - mean) / std, 0.0), -_CLIP_Z, _CLIP_Z)
    out[usable] = np.where(enough, value, 0.0)
    return out


def _excess(values: np.ndarray, codes: np.ndarray, peers: np.ndarray, min_peers: int) -> np.ndarray:
    out = np.zeros(len(values))
    usable, groups, enough = _grouped(values, codes, peers, min_peers)
    if not usable.any():
        return out
    excess = groups.obj.to_numpy() - groups.transform("mean").to_numpy()
    out[usable] = np.where(enough, excess, 0.0)
    return out
