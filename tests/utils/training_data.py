"""Small real datasets for the training tests, and a tiny training configuration.

The frames follow the feature library's contract (``symbol, date, close, adj_close,
<features>, target_1..target_H``) but are computed here from the embedded MSFT and S&P 500
data, so these tests depend only on the models under test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stockml.model_config import ModelConfig
from stockml.train import Dataset

HORIZON = 3
# named like the feature library's columns the interval bands scale with (volatility_20, atr_ratio)
FEATURES = ["ret_1", "ret_5", "ret_10", "volatility_20", "atr_ratio", "trend_20", "range_1"]
TARGETS = [f"target_{h}" for h in range(1, HORIZON + 1)]


# MSFT's history ends here; ^GSPC is cut to the same end so both share their sessions
LAST_DAY = "2017-11-10"


def embedded_bars(symbol: str, rows: int) -> pd.DataFrame:
    """The ``rows`` sessions up to ``LAST_DAY`` of MSFT (pmdarima) or ^GSPC (arch)."""
    if symbol == "MSFT":
        from pmdarima.datasets import load_msft

        raw = load_msft().tail(rows)
        dates, adj = pd.to_datetime(raw["Date"]), raw["Close"]
    else:
        from arch.data import sp500

        raw = sp500.load().loc[:LAST_DAY].tail(rows)
        dates, adj = raw.index, raw["Adj Close"]
    return pd.DataFrame(
        {
            "symbol": symbol,
            "date": pd.DatetimeIndex(dates),
            "close": raw["Close"].to_numpy(),
            "adj_close": adj.to_numpy(),
            "high": raw["High"].to_numpy(),
            "low": raw["Low"].to_numpy(),
        }
    )


def feature_frame(bars: pd.DataFrame, horizon: int = HORIZON) -> pd.DataFrame:
    """Return/volatility/trend features and forward log-return targets, per symbol."""
    frames = []
    for _symbol, b in bars.groupby("symbol", sort=True):
        b = b.sort_values("date").reset_index(drop=True)
        log_price = np.log(b["adj_close"])
        ret = log_price.diff()
        out = b[["symbol", "date", "close", "adj_close"]].copy()
        out["ret_1"] = ret
        out["ret_5"] = log_price.diff(5)
        out["ret_10"] = log_price.diff(10)
        out["volatility_20"] = ret.rolling(20).std()
        out["atr_ratio"] = ((b["high"] - b["low"]) / b["adj_close"]).rolling(14).mean()
        out["trend_20"] = log_price - log_price.rolling(20).mean()
        out["range_1"] = np.log(b["high"] / b["low"])
        for h in range(1, horizon + 1):
            out[f"target_{h}"] = log_price.shift(-h) - log_price
        frames.append(out)
    return pd.concat(frames, ignore_index=True)


def make_dataset(symbols: tuple[str, ...] = ("MSFT",), rows: int = 400) -> Dataset:
    bars = pd.concat([embedded_bars(s, rows) for s in symbols], ignore_index=True)
    return Dataset(
        frame=feature_frame(bars),
        feature_names=FEATURES,
        target_names=TARGETS,
        feature_config={"stand_in": True},
    )


def with_leak(data: Dataset, noise: float, seed: int = 0) -> Dataset:
    """``data`` plus a feature holding each row's future returns + noise: a model can beat naive."""
    rng = np.random.default_rng(seed)
    frame = data.frame.copy()
    names = []
    for target in data.target_names:
        name = f"hint_{target}"
        frame[name] = frame[target].fillna(0.0) + rng.normal(0.0, noise, len(frame))
        names.append(name)
    return Dataset(frame, [*data.feature_names, *names], data.target_names, data.feature_config)


def tiny_config(**overrides: object) -> ModelConfig:
    """Few epochs, few trees, short windows: seconds per fit on one core."""
    base = {
        "seed": 7,
        "window": 10,
        "device": "cpu",
        "n_threads": 1,
        "lstm": {
            "hidden_size": 8,
            "num_layers": 1,
            "max_epochs": 3,
            "patience": 2,
            "batch_size": 64,
        },
        "xgboost": {
            "n_estimators": 30,
            "max_depth": 3,
            "early_stopping_rounds": 10,
            "learning_rate": 0.1,
        },
        "lightgbm": {
            "n_estimators": 30,
            "num_leaves": 7,
            "min_data_in_leaf": 10,
            "early_stopping_rounds": 10,
            "learning_rate": 0.1,
        },
        "evaluation": {
            "n_folds": 2,
            "test_fraction": 0.3,
            "val_fraction": 0.2,
            "calibration_fraction": 0.2,
            "cost_bps": 5,
        },
        # thresholds a few hundred sessions can meet; the evidence asked for stays the same
        "promotion": {"min_test_sessions": 50, "min_folds": 2, "min_folds_beating_baselines": 2},
    }
    base.update(overrides)
    return ModelConfig.model_validate(base)


# the single factors' columns of configs/model_config.yaml (universe.factors)
UNIVERSE_FEATURES = [
    "ret_1",
    "volatility_20",
    "atr_ratio",
    "xs_logret_1",
    "xs_logret_5",
    "xs_momentum",
    "xs_volatility",
    "signal",
]


def universe_dataset(
    symbols: int = 30, sessions: int = 260, strength: float = 0.004, seed: int = 0
) -> Dataset:
    """A synthetic universe with a PLANTED cross-sectional edge, and the factor columns.

    Each symbol's daily log return is a common market move + ``strength`` x its ``signal``
    (a standard normal known at the previous close) + idiosyncratic noise (sd 1.5%), so a
    model that ranks by ``signal`` has a daily rank IC of about
    ``strength / sqrt(strength^2 + 0.015^2)`` (0.26 at the default); the factor columns
    (short-term reversal, momentum, volatility ranks) carry no edge by construction.
    ``strength=0`` gives a universe where nothing predicts anything.
    """
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2015-01-02", periods=sessions)
    market = rng.normal(0.0003, 0.008, sessions)
    frames = []
    signal = rng.normal(0.0, 1.0, (symbols, sessions))
    for i in range(symbols):
        # the return of session t is set by the signal known at the close of t - 1
        ret = market + strength * np.r_[0.0, signal[i, :-1]] + rng.normal(0.0, 0.015, sessions)
        log_price = np.log(50.0 + 10 * i) + np.cumsum(ret)
        frame = pd.DataFrame(
            {
                "symbol": f"S{i:03d}",
                "date": dates,
                "close": np.exp(log_price),
                "adj_close": np.exp(log_price),
                "ret_1": np.r_[np.nan, np.diff(log_price)],
                "signal": signal[i],
            }
        )
        frame["volatility_20"] = frame["ret_1"].rolling(20).std()
        frame["atr_ratio"] = frame["ret_1"].abs().rolling(14).mean()
        frame["ret_5"] = pd.Series(log_price).diff(5)
        frame["mom"] = pd.Series(log_price).shift(21) - pd.Series(log_price).shift(120)
        for h in range(1, HORIZON + 1):
            frame[f"target_{h}"] = pd.Series(log_price).shift(-h) - log_price
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    by_date = out.groupby("date")
    for source, column in (
        ("ret_1", "xs_logret_1"),
        ("ret_5", "xs_logret_5"),
        ("mom", "xs_momentum"),
        ("volatility_20", "xs_volatility"),
    ):
        out[column] = (by_date[source].rank(pct=True) - 0.5).fillna(0.0)
    out = out.drop(columns=["ret_5", "mom"]).dropna(subset=["ret_1", "volatility_20", "atr_ratio"])
    return Dataset(
        frame=out.reset_index(drop=True),
        feature_names=UNIVERSE_FEATURES,
        target_names=TARGETS,
        feature_config={"stand_in": True},
    )
