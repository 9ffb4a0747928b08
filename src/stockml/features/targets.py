"""Prediction targets: forward log returns of ``adj_close`` over 1..H sessions."""

from __future__ import annotations

import numpy as np

from stockml.features.config import FeatureConfig


def target_columns(config: FeatureConfig) -> list[str]:
    """``target_1 .. target_H``."""
    return [f"target_{h}" for h in range(1, config.horizon + 1)]


def forward_log_returns(adj_close: np.ndarray, horizon: int) -> np.ndarray:
    """``log(adj_close[t+h] / adj_close[t])`` for h = 1..horizon, of ONE symbol sorted by date.

    Returns:
        ``[rows, horizon]``; the last ``h`` rows of column ``h`` have no future and hold NaN
        (such rows are never used for training).
    """
    log_close = np.log(np.asarray(adj_close, dtype="float64"))
    out = np.full((len(log_close), horizon), np.nan)
    for h in range(1, horizon + 1):
        out[:-h, h - 1] = log_close[h:] - log_close[:-h]
    return out
