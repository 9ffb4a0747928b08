"""Replay: what the API would have served on past sessions, recorded as it records forecasts.

For each session of a range, the bundle's serving :class:`~stockml.inference.Predictor` (ONNX
Runtime, the API's own code) forecasts from the feature rows up to that session, and the
forecast goes to a :class:`~stockml.predlog.PredictionLog` exactly as a served one does. The
demo and the tests use it to give the monitor days of served forecasts to score; a live
deployment never needs it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from stockml.bundle import Bundle
from stockml.inference import Predictor
from stockml.predlog import PredictionLog
from stockml.window import FeatureWindow


def replay_forecasts(
    bundle: Bundle,
    features: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    log: PredictionLog,
    days: int | None = None,
    models: Sequence[str] | None = None,
) -> int:
    """Forecast every symbol of ``features`` on each of its sessions in ``[start, end]`` and
    record the forecasts in ``log`` (request id ``replay-<symbol>-<date>``).

    Args:
        bundle: the bundle to serve.
        features: the ``features/`` table's rows (``symbol, date, close, <features>``),
            including the rows before ``start`` that feed the first windows.
        start, end: the sessions to forecast.
        log: where the forecasts are recorded (flushed by the caller).
        days: horizons per forecast (default: the bundle's).
        models: models per forecast (default: all).

    Returns:
        How many forecasts were recorded.
    """
    predictor = Predictor(bundle)
    names = predictor.spec.feature_names
    recorded = 0
    for _symbol, rows in features.groupby("symbol", sort=True):
        ordered = rows.sort_values("date")
        finite = np.isfinite(ordered[names].to_numpy(np.float64)).all(axis=1)
        window = FeatureWindow.from_frame(ordered[finite], names)
        for i, day in enumerate(pd.DatetimeIndex(window.dates.astype("datetime64[ns]"))):
            if not start <= day <= end or i + 1 < predictor.rows_needed:
                continue
            upto = FeatureWindow(
                window.symbol,
                window.dates[: i + 1],
                window.close[: i + 1],
                window.columns,
                window.values[: i + 1],
            ).tail(predictor.rows_needed)
            forecast = predictor.predict(upto, models, days)
            log.record(forecast, f"replay-{window.symbol}-{day.date().isoformat()}", "replay")
            recorded += 1
    return recorded
