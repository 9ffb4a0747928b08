"""Technical indicators of ONE symbol's adjusted bars, and the scale-free features built on them.

The indicator functions take and return 1-D float arrays (a Series works as input). They are
the ones the feature pipeline uses, and the ones the tests compare with the StockCharts
reference values and with ``ta`` 0.11 (``tests/unit/features/test_features_reference.py``).
They are numpy re-implementations of ``ta``'s formulas: ``ta`` pays pandas' per-operation
overhead on every call and its ``AverageTrueRange`` loops over rows in Python (and returns 0,
not NaN, before its window is full), which kept the full feature set far below the
200k rows/s target. Rolling windows are computed window by window (``sliding_window_view``),
not by running sums, so a value depends only on the rows of its window, never on how much
history came before it. Every function is causal: the value at row ``t`` uses rows ``<= t``.

Conventions worth knowing (checked against the references):

- RSI uses Wilder's smoothing as an EWM with ``alpha = 1/n`` started at the FIRST change (the
  first, undefined change counts as 0), as ``ta`` does. StockCharts' ChartSchool seeds the
  averages with the simple mean of the first ``n`` changes instead; both recursions are the same
  afterwards, so the two differ only in the first rows and converge by ``(1 - 1/n)^k``.
- ATR seeds with the simple mean of the first ``n`` true ranges (the first true range is
  ``high - low``) and then applies Wilder's recursion, as StockCharts and ``ta`` do.
- Bollinger bands use the population standard deviation (``ddof=0``), as StockCharts does.
- EMAs are recursive from the first row (``adjust=False``) but NaN until ``n`` rows exist.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from stockml.features.config import FeatureConfig

ArrayLike: TypeAlias = np.ndarray | pd.Series


def _arr(x: ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype="float64")


def _pad(values: np.ndarray, n: int) -> np.ndarray:
    """Prefix NaN so a per-window result lines up with the window's last row."""
    out = np.full(n, np.nan)
    if len(values):
        out[n - len(values) :] = values
    return out


def _windows(x: np.ndarray, window: int) -> np.ndarray:
    if len(x) < window:
        return np.empty((0, window))
    return sliding_window_view(x, window)


def rolling_mean(x: ArrayLike, window: int) -> np.ndarray:
    a = _arr(x)
    return _pad(_windows(a, window).mean(axis=1), len(a))


def rolling_std(x: ArrayLike, window: int, ddof: int = 1) -> np.ndarray:
    a = _arr(x)
    return _pad(_windows(a, window).std(axis=1, ddof=ddof), len(a))


def rolling_sum(x: ArrayLike, window: int) -> np.ndarray:
    a = _arr(x)
    return _pad(_windows(a, window).sum(axis=1), len(a))


def rolling_max(x: ArrayLike, window: int) -> np.ndarray:
    a = _arr(x)
    return _pad(_windows(a, window).max(axis=1), len(a))


def rolling_min(x: ArrayLike, window: int) -> np.ndarray:
    a = _arr(x)
    return _pad(_windows(a, window).min(axis=1), len(a))


def ewm(x: ArrayLike, alpha: float) -> np.ndarray:
    """Recursive EWM ``y[t] = (1 - alpha) * y[t-1] + alpha * x[t]`` from the first non-NaN value."""
    return pd.Series(_arr(x)).ewm(alpha=alpha, adjust=False).mean().to_numpy(copy=True)


def diff(x: ArrayLike, k: int = 1) -> np.ndarray:
    a = _arr(x)
    out = np.full(len(a), np.nan)
    if len(a) > k:
        out[k:] = a[k:] - a[:-k]
    return out


def sma(close: ArrayLike, window: int) -> np.ndarray:
    """Simple moving average; NaN for the first ``window - 1`` rows."""
    return rolling_mean(close, window)


def ema(close: ArrayLike, window: int) -> np.ndarray:
    """EMA with span ``window`` (``alpha = 2 / (window + 1)``); NaN for the first ``window - 1`` rows."""
    out = ewm(close, 2.0 / (window + 1))
    out[: window - 1] = np.nan
    return out


def rsi(close: ArrayLike, window: int = 14) -> np.ndarray:
    """Wilder's RSI in [0, 100] (EWM seeded at the first change, see the module docstring).

    100 where the average loss is 0; NaN for the first ``window - 1`` rows.
    """
    change = diff(close)
    change[0] = 0.0
    up = ewm(np.maximum(change, 0.0), 1.0 / window)
    down = ewm(np.maximum(-change, 0.0), 1.0 / window)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(down == 0, 100.0, 100.0 - 100.0 / (1.0 + up / down))
    out[: window - 1] = np.nan
    return out


def macd(
    close: ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MACD line (EMA fast - EMA slow), its signal EMA (from the line's first value), histogram."""
    line = ema(close, fast) - ema(close, slow)
    sig = ewm(line, 2.0 / (signal + 1))
    first = slow - 1
    sig[: first + signal - 1] = np.nan
    return line, sig, line - sig


def bollinger(
    close: ArrayLike, window: int = 20, n_std: float = 2.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Middle, upper and lower band (population std), %B, and bandwidth in percent of the middle."""
    mid = rolling_mean(close, window)
    std = rolling_std(close, window, ddof=0)
    upper = mid + n_std * std
    lower = mid - n_std * std
    with np.errstate(divide="ignore", invalid="ignore"):
        pband = (_arr(close) - lower) / (upper - lower)
        width = (upper - lower) / mid * 100.0
    return mid, upper, lower, pband, width


def true_range(high: ArrayLike, low: ArrayLike, close: ArrayLike) -> np.ndarray:
    """max(high - low, |high - prev close|, |low - prev close|); ``high - low`` on the first row."""
    h, lo, c = _arr(high), _arr(low), _arr(close)
    prev = np.r_[np.nan, c[:-1]]
    with np.errstate(invalid="ignore"):
        ranges = np.column_stack([h - lo, np.abs(h - prev), np.abs(lo - prev)])
    ranges[0, 1:] = ranges[0, 0]
    return ranges.max(axis=1)


def atr(high: ArrayLike, low: ArrayLike, close: ArrayLike, window: int = 14) -> np.ndarray:
    """Wilder's average true range; NaN for the first ``window - 1`` rows.

    ``ATR[n-1] = mean(TR[0:n])`` and ``ATR[t] = (ATR[t-1] * (n-1) + TR[t]) / n``: that recursion
    is an EWM with ``alpha = 1/n`` started at the seed.
    """
    tr = true_range(high, low, close)
    out = np.full(len(tr), np.nan)
    if len(tr) < window:
        return out
    seeded = tr[window - 1 :].copy()
    seeded[0] = tr[:window].mean()
    out[window - 1 :] = ewm(seeded, 1.0 / window)
    return out


def obv(close: ArrayLike, volume: ArrayLike) -> np.ndarray:
    """On-balance volume: cumulative volume signed by the close's direction (first row +)."""
    c, v = _arr(close), _arr(volume)
    down = np.r_[False, c[1:] < c[:-1]]
    return np.cumsum(np.where(down, -v, v))


def roc(close: ArrayLike, window: int = 12) -> np.ndarray:
    """Rate of change in percent over ``window`` rows."""
    c = _arr(close)
    out = np.full(len(c), np.nan)
    if len(c) > window:
        out[window:] = (c[window:] / c[:-window] - 1.0) * 100.0
    return out


def stochastic(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, window: int = 14, smooth: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Stochastic %K in [0, 100] over ``window`` rows and %D, its ``smooth``-row SMA.

    A flat window (highest high == lowest low) has no defined %K; it gets 50, the middle.
    """
    hh = rolling_max(high, window)
    ll = rolling_min(low, window)
    span = hh - ll
    with np.errstate(divide="ignore", invalid="ignore"):
        # clip: (close - ll) / span can round to 1 + 1e-16 when the close is the high
        k = np.where(span > 0, np.clip(100.0 * (_arr(close) - ll) / span, 0.0, 100.0), 50.0)
    k[np.isnan(span)] = np.nan
    return k, rolling_mean(k, smooth)


def price_feature_columns(config: FeatureConfig) -> list[str]:
    """Names of the price/volume features, in output order."""
    cols = [f"sma_ratio_{w}" for w in config.sma_windows]
    cols += [f"ema_ratio_{w}" for w in config.ema_windows]
    cols += [f"logret_{k}" for k in config.return_windows]
    cols += [f"volatility_{w}" for w in config.volatility_windows]
    cols += [
        "rsi",
        "macd_line",
        "macd_signal",
        "macd_hist",
        "bb_pband",
        "bb_width",
        "atr_ratio",
        "roc",
        "stoch_k",
        "stoch_d",
        "hl_range",
        "obv_flow",
        "volume_z",
        "volume_missing",
    ]
    return cols


def price_features(bars: pd.DataFrame, config: FeatureConfig) -> dict[str, np.ndarray]:
    """Scale-free features of ONE symbol's bars (sorted by date, adjusted OHLC columns).

    Args:
        bars: columns ``adj_high, adj_low, adj_close, volume`` of one symbol.
        config: windows.

    Returns:
        ``price_feature_columns(config)`` -> one value per input row; NaN in warm-up rows.
        Volume features are 0 with ``volume_missing = 1`` where the window lacks volume
        (indices such as ^VIX publish none).
    """
    close = bars["adj_close"].to_numpy(dtype="float64")
    high = bars["adj_high"].to_numpy(dtype="float64")
    low = bars["adj_low"].to_numpy(dtype="float64")
    out: dict[str, np.ndarray] = {}
    for w in config.sma_windows:
        out[f"sma_ratio_{w}"] = close / sma(close, w) - 1.0
    for w in config.ema_windows:
        out[f"ema_ratio_{w}"] = close / ema(close, w) - 1.0
    log_close = np.log(close)
    daily = diff(log_close)
    for k in config.return_windows:
        out[f"logret_{k}"] = diff(log_close, k)
    for w in config.volatility_windows:
        out[f"volatility_{w}"] = _shifted(rolling_std(daily[1:], w), 1)
    out["rsi"] = rsi(close, config.rsi_window) / 100.0
    line, signal, hist = macd(close, config.macd.fast, config.macd.slow, config.macd.signal)
    out["macd_line"] = line / close
    out["macd_signal"] = signal / close
    out["macd_hist"] = hist / close
    _, _, _, pband, width = bollinger(close, config.bollinger.window, config.bollinger.std)
    # a flat window has zero width: the price sits in the middle of its (empty) band
    out["bb_pband"] = np.where(width == 0, 0.5, pband)
    out["bb_width"] = width / 100.0
    out["atr_ratio"] = atr(high, low, close, config.atr_window) / close
    out["roc"] = roc(close, config.roc_window) / 100.0
    stoch_k, stoch_d = stochastic(
        high, low, close, config.stochastic.window, config.stochastic.smooth
    )
    out["stoch_k"] = stoch_k / 100.0
    out["stoch_d"] = stoch_d / 100.0
    out["hl_range"] = (high - low) / close
    out.update(
        _volume_features(close, bars["volume"].to_numpy(dtype="float64"), config.volume_window)
    )
    return out


def _shifted(values: np.ndarray, k: int) -> np.ndarray:
    """``values`` computed on ``x[k:]``, realigned to ``x``'s rows (NaN for the first ``k``)."""
    return np.r_[np.full(k, np.nan), values]


def _volume_features(close: np.ndarray, volume: np.ndarray, window: int) -> dict[str, np.ndarray]:
    """OBV flow (OBV change over the window / volume traded in it) and log-volume z-score.

    A window with any day lacking volume is neutral (0) and flagged: never NaN after warm-up.
    """
    n = len(close)
    has_volume = np.isfinite(volume) & (volume > 0)
    vol = np.where(has_volume, volume, 0.0)
    missing = rolling_max((~has_volume).astype("float64"), window + 1) > 0
    balance = obv(close, vol)
    change = diff(balance, window)
    traded = rolling_sum(vol, window)
    log_vol = np.log(np.where(has_volume, vol, 1.0))
    mean = rolling_mean(log_vol, window)
    std = rolling_std(log_vol, window)
    with np.errstate(divide="ignore", invalid="ignore"):
        flow = np.where(traded > 0, change / traded, 0.0)
        z = np.where(std > 0, (log_vol - mean) / std, 0.0)
    started = np.arange(n) >= window
    nan = np.full(n, np.nan)
    return {
        "obv_flow": np.where(started, np.where(missing, 0.0, flow), nan),
        "volume_z": np.where(started, np.where(missing, 0.0, z), nan),
        "volume_missing": np.where(started, missing.astype("float64"), nan),
    }
