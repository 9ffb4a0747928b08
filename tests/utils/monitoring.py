"""A monitor run on served forecasts of real data: the replay the monitoring tests share.

``replay_and_monitor`` serves the test bundle (``utils.serving_bundle``) on each of MSFT's
last ``sessions`` sessions of the embedded data, through the serving Predictor and the
prediction log as the API records what it serves, then runs the monitor as of the last one.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from stockml.bundle import read_bundle_dir
from stockml.model_config import ModelConfig
from stockml.monitoring.monitor import run_monitor
from stockml.monitoring.replay import replay_forecasts
from stockml.predlog import PredictionLog
from stockml.settings import Settings
from stockml.storage import Store
from utils.serving_bundle import BuiltBundle

SYMBOL = "MSFT"


def replay_window(built: BuiltBundle, sessions: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The first and last of MSFT's last ``sessions`` feature sessions."""
    dates = sorted(built.features.loc[built.features["symbol"] == SYMBOL, "date"].unique())
    return pd.Timestamp(dates[-sessions]), pd.Timestamp(dates[-1])


def replay(
    store: Store, built: BuiltBundle, start: pd.Timestamp, end: pd.Timestamp, **kwargs: Any
) -> PredictionLog:
    """Serve MSFT on each session of ``[start, end]`` and write the log to the store."""
    log = PredictionLog(store, background=False)
    features = built.features[built.features["symbol"] == SYMBOL]
    replay_forecasts(read_bundle_dir(built.folder), features, start, end, log, **kwargs)
    log.flush()
    return log


def replay_and_monitor(
    settings: Settings, built: BuiltBundle, sessions: int = 70, **monitor: Any
) -> dict[str, Any]:
    """Replay MSFT's last ``sessions`` sessions, then one monitor run as of the last."""
    store = Store.from_settings(settings.store)
    start, end = replay_window(built, sessions)
    replay(store, built, start, end)
    return run_monitor(store, settings, ModelConfig.from_yaml(), run_date=end.date(), **monitor)
