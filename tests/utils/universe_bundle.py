"""A REAL small global (universe) bundle for the ranking and any-symbol serving tests.

- bars: 25 synthetic stocks (random walks with OHLCV bars), one of which stops trading five
  sessions before the others (a merger: it must be left out of the ranking), one that lists
  late, and one the bundle is NOT trained on (a global bundle must still serve it);
- features: the shared feature library's ``build_features`` (no market series, no news; the
  cross-sections over the 25);
- the bundle: ``stockml.train.train`` in universe mode (rank target, early stopping on the
  validation rank IC, score map) with a tiny LSTM and XGBoost, as ``stockml train --universe``
  writes it;
- in the store (``publish``): raw bars, the features table and, through the feature
  pipeline's own ``write_windows``, every symbol's window and the universe object.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stockml.calendar import sessions
from stockml.features import build_features, feature_columns, target_columns
from stockml.features.config import FeatureConfig
from stockml.model_config import ModelConfig
from stockml.train import Dataset, train
from utils.serving_bundle import BuiltBundle

CONFIG = FeatureConfig()
N_SYMBOLS = 25
ROWS = 420
DELISTED = "U23"  # its bars end 5 sessions before the others'
LATE = "U22"  # lists 300 sessions after the others
UNTRAINED = "U24"  # features stored, never trained on


def universe_bars(seed: int = 0) -> pd.DataFrame:
    """OHLCV bars of ``N_SYMBOLS`` random-walk stocks over ``ROWS`` NYSE sessions."""
    rng = np.random.default_rng(seed)
    dates = sessions("2016-01-04", "2018-12-31")[:ROWS]
    frames = []
    for i in range(N_SYMBOLS):
        close = 20.0 * (1 + i) * np.exp(np.cumsum(rng.normal(0.0003, 0.015, ROWS)))
        spread = np.abs(rng.normal(0.0, 0.01, ROWS)) * close
        frame = pd.DataFrame(
            {
                "symbol": f"U{i:02d}",
                "date": dates,
                "open": close * np.exp(rng.normal(0.0, 0.004, ROWS)),
                "close": close,
                "adj_close": close,
                "volume": rng.integers(100_000, 2_000_000, ROWS).astype(float),
            }
        )
        frame["high"] = np.maximum(frame["open"], close) + spread
        frame["low"] = np.minimum(frame["open"], close) - spread
        if frame["symbol"].iloc[0] == DELISTED:
            frame = frame.iloc[:-5]
        if frame["symbol"].iloc[0] == LATE:
            frame = frame.iloc[300:]
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out["source"] = "synthetic"
    return out


def tiny_universe_config() -> ModelConfig:
    """Universe mode with seconds-long fits: 2 folds, a tiny LSTM and few trees."""
    return ModelConfig.model_validate(
        {
            "seed": 3,
            "window": 10,
            "device": "cpu",
            "n_threads": 1,
            "models": ["lstm", "xgboost"],
            "lstm": {"hidden_size": 8, "max_epochs": 2, "patience": 1, "batch_size": 256},
            "xgboost": {"n_estimators": 20, "max_depth": 3, "early_stopping_rounds": 5},
            "evaluation": {
                "n_folds": 2,
                "test_fraction": 0.3,
                "val_fraction": 0.2,
                "calibration_fraction": 0.2,
            },
            "universe": {"min_names": 10, "top_k": 5, "overrides": {}},
            "promotion": {"min_test_sessions": 50, "min_folds": 2},
        }
    ).for_universe()


def build_universe_bundle(folder: Path, version: str = "v-universe-1") -> BuiltBundle:
    """Train the global bundle on the synthetic universe into ``folder/<version>/``."""
    bars = universe_bars()
    features = build_features(bars, None, None, CONFIG)
    data = Dataset(
        frame=features[features["symbol"] != UNTRAINED].reset_index(drop=True),
        feature_names=feature_columns(CONFIG),
        target_names=target_columns(CONFIG),
        feature_config=CONFIG.model_dump(mode="json"),
    )
    result = train(data, tiny_universe_config(), folder, version=version)
    return BuiltBundle(result.bundle_dir, result.manifest, features, bars)
