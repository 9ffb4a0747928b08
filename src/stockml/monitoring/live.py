"""Live metrics: the forecasts the API served, scored against the prices realised after them.

The scoring is the forward test's and the walk-forward's (``stockml.evaluation``): served
forecasts become a :class:`~stockml.evaluation.Forecasts` beside the bundle's naive and drift
baselines, ``Forecasts.join`` matches them with the realised forward log returns and
``score_forecasts`` computes every metric. ``join(partial=True)``: a horizon counts as soon as
its own outcome exists, so horizon 1 is scored the next session, horizon 5 five sessions on.

What is scored, per model version (a figure never mixes versions):

- **the window**: the served forecasts of the last ``window_sessions`` as-of sessions whose
  horizon-1 outcome is known: ``score_forecasts``' metrics per model (and for the baselines),
  pooled and per symbol, per horizon: RMSE and its ratio to naive and to the better of naive
  and drift with a one-sided Diebold-Mariano test, directional accuracy beside always-long's,
  interval coverage and width; plus ``rank_ic`` for universes (below);
- **the series**: for the chart of accuracy over time, the same ratios, directional accuracy,
  always-long's and coverage over the rolling ``series_sessions`` sessions ending at each
  session of the last ``history_sessions`` (pooled over the symbols and per symbol), from the
  same per-row errors.

The outcome of an as-of session ``t`` at horizon ``h`` is ``log(adj_close[t+h] / adj_close[t])``
over the symbol's stored sessions, the feature library's target
(``stockml.features.targets.forward_log_returns``), from the raw bars up to the run date.
A forecast's bounds are its served price bounds as log returns of its last close.

**Rank IC** (a universe): per session, the Spearman correlation across symbols of the served
forecast and the outcome, averaged over the sessions with at least ``min_rank_ic_symbols``
symbols (None for a single stock).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from stockml import stats
from stockml.evaluation import Forecasts, json_safe, score_forecasts
from stockml.features.targets import forward_log_returns


@dataclass(frozen=True)
class VersionInfo:
    """What the scoring needs of a bundle: its horizon and its baselines' forecasts."""

    version: str
    horizon: int
    baselines: dict[str, list[float]]

    @classmethod
    def from_manifest(cls, manifest: Any) -> VersionInfo:
        extra = manifest.extra or {}
        baselines = {k: [float(x) for x in v] for k, v in extra.get("baselines", {}).items()}
        baselines.setdefault("naive", [0.0] * int(manifest.horizon))
        return cls(str(manifest.version), int(manifest.horizon), baselines)


def target_names(horizon: int) -> list[str]:
    return [f"target_{h}" for h in range(1, horizon + 1)]


def realised_outcomes(bars: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """``symbol, date, target_1..H``: the forward log returns of ``adj_close`` realised so far
    (NaN where the future session is not stored yet)."""
    names = target_names(horizon)
    frames = []
    for symbol, rows in bars.sort_values(["symbol", "date"]).groupby("symbol", sort=True):
        y = forward_log_returns(rows["adj_close"].to_numpy(np.float64), horizon)
        frame = pd.DataFrame(y, columns=names)
        frame.insert(0, "date", pd.to_datetime(rows["date"]).to_numpy())
        frame.insert(0, "symbol", str(symbol))
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["symbol", "date", *names])
    return pd.concat(frames, ignore_index=True)


def served_to_forecasts(served: pd.DataFrame, info: VersionInfo) -> Forecasts:
    """One version's served forecasts as :class:`Forecasts` (log returns ``[n, H]``, NaN
    where a horizon or a model was not served), with the bundle's baselines beside them."""
    rows = served[served["model_version"] == info.version]
    keys = rows[["symbol", "as_of"]].drop_duplicates().sort_values(["as_of", "symbol"])
    keys = keys.reset_index(drop=True)
    index = pd.MultiIndex.from_frame(keys)
    n, horizon = len(keys), info.horizon
    position = index.get_indexer(pd.MultiIndex.from_frame(rows[["symbol", "as_of"]]))
    column = rows["horizon"].to_numpy(np.int64) - 1
    ok = (column >= 0) & (column < horizon)
    predictions: dict[str, np.ndarray] = {}
    lower: dict[str, np.ndarray] = {}
    upper: dict[str, np.ndarray] = {}
    last_close = rows["last_close"].to_numpy(np.float64)
    for model in sorted(rows["model"].unique()):
        mask = ok & (rows["model"].to_numpy() == model)
        pred = np.full((n, horizon), np.nan)
        pred[position[mask], column[mask]] = rows["predicted_log_return"].to_numpy(np.float64)[mask]
        predictions[model] = pred
        lo_price = rows["lower"].to_numpy(np.float64)[mask]
        if np.isfinite(lo_price).any():
            lo = np.full((n, horizon), np.nan)
            hi = np.full((n, horizon), np.nan)
            with np.errstate(divide="ignore", invalid="ignore"):
                lo[position[mask], column[mask]] = np.log(lo_price / last_close[mask])
                hi[position[mask], column[mask]] = np.log(
                    rows["upper"].to_numpy(np.float64)[mask] / last_close[mask]
                )
            lower[model], upper[model] = lo, hi
    for name, values in info.baselines.items():
        if name not in predictions:
            predictions[name] = np.tile(np.asarray(values[:horizon], np.float64), (n, 1))
    return Forecasts(
        keys["symbol"].to_numpy(str),
        keys["as_of"].to_numpy("datetime64[ns]"),
        predictions,
        lower,
        upper,
    )


def rank_ic(
    pred: np.ndarray, y: np.ndarray, dates: np.ndarray, min_symbols: int
) -> tuple[float | None, int]:
    """Mean over sessions of the cross-sectional Spearman correlation, and how many sessions
    had at least ``min_symbols`` symbols (the mean is None without any)."""
    ok = np.isfinite(pred) & np.isfinite(y)
    values = []
    for day in np.unique(dates[ok]):
        rows = ok & (dates == day)
        if rows.sum() >= min_symbols:
            rho = stats.spearman(pred[rows], y[rows])
            if np.isfinite(rho):
                values.append(rho)
    return (float(np.mean(values)) if values else None), len(values)


def _series(
    forecasts: Forecasts, y: np.ndarray, model: str, h: int, sessions: int
) -> dict[str, list[Any]]:
    """Rolling figures of one model at horizon ``h`` over ``sessions`` sessions, per session."""
    pred = forecasts.predictions[model][:, h]
    truth = y[:, h]
    ok = np.isfinite(pred) & np.isfinite(truth)
    frame = pd.DataFrame({"date": forecasts.dates[ok]})
    frame["se"] = (pred[ok] - truth[ok]) ** 2
    frame["se_naive"] = truth[ok] ** 2
    drift = forecasts.predictions.get("drift")
    frame["se_drift"] = (drift[ok, h] - truth[ok]) ** 2 if drift is not None else np.nan
    directional = (pred[ok] != 0) & (truth[ok] != 0)
    frame["n_dir"] = directional.astype(float)
    frame["hit"] = (directional & (np.sign(pred[ok]) == np.sign(truth[ok]))).astype(float)
    frame["long"] = (directional & (truth[ok] > 0)).astype(float)
    if model in forecasts.lower:
        lo, hi = forecasts.lower[model][ok, h], forecasts.upper[model][ok, h]
        banded = np.isfinite(lo) & np.isfinite(hi)
        frame["n_band"] = banded.astype(float)
        frame["inside"] = (banded & (truth[ok] >= lo) & (truth[ok] <= hi)).astype(float)
    else:
        frame["n_band"] = 0.0
        frame["inside"] = 0.0
    frame["n"] = 1.0
    daily = frame.groupby("date", sort=True).sum()
    rolled = daily.rolling(sessions, min_periods=sessions).sum().dropna(subset=["n"])

    def ratio(a: pd.Series, b: pd.Series) -> list[float | None]:
        return [float(np.sqrt(x / z)) if z > 0 else None for x, z in zip(a, b, strict=True)]

    def share(a: pd.Series, b: pd.Series) -> list[float | None]:
        return [float(x / z) if z > 0 else None for x, z in zip(a, b, strict=True)]

    return {
        "dates": [pd.Timestamp(d).date().isoformat() for d in rolled.index],
        "rmse_ratio_vs_naive": ratio(rolled["se"], rolled["se_naive"]),
        "rmse_ratio_vs_drift": ratio(rolled["se"], rolled["se_drift"])
        if drift is not None
        else [None] * len(rolled),
        "directional_accuracy": share(rolled["hit"], rolled["n_dir"]),
        "directional_accuracy_always_long": share(rolled["long"], rolled["n_dir"]),
        "interval_coverage": share(rolled["inside"], rolled["n_band"]),
        "n": [int(v) for v in rolled["n"]],
    }


def _add_drift_ratios(scores: dict[str, Any], window: Forecasts, y: np.ndarray) -> None:
    """``rmse_ratio_vs_drift`` beside the ratio to naive that ``score_forecasts`` gives, on the
    same rows (the model's RMSE over the drift baseline's)."""
    drift = window.predictions.get("drift")
    if drift is None:
        return
    for name, block in scores.items():
        pred = window.predictions[name]
        scopes = [(block["pooled"], np.ones(len(window), bool))]
        scopes += [(m, window.symbols == s) for s, m in block["per_symbol"].items()]
        for target, rows in scopes:
            for h, metrics in target["by_horizon"].items():
                k = int(h) - 1
                ok = rows & np.isfinite(pred[:, k]) & np.isfinite(y[:, k])
                base = float(np.mean((drift[ok, k] - y[ok, k]) ** 2)) if ok.any() else 0.0
                error = float(np.mean((pred[ok, k] - y[ok, k]) ** 2)) if ok.any() else 0.0
                metrics["rmse_ratio_vs_drift"] = float(np.sqrt(error / base)) if base > 0 else None
            target["rmse_ratio_vs_drift"] = target["by_horizon"]["1"]["rmse_ratio_vs_drift"]


def last_sessions(dates: np.ndarray, sessions: int) -> np.ndarray:
    """Mask of the rows dated in the last ``sessions`` distinct sessions of ``dates``."""
    days = np.unique(dates)
    return np.isin(dates, days[-sessions:]) if len(days) else np.zeros(len(dates), bool)


def score_version(
    served: pd.DataFrame,
    outcomes: pd.DataFrame,
    info: VersionInfo,
    window_sessions: int,
    series_sessions: int,
    history_sessions: int,
    min_rank_ic_symbols: int,
    cost_bps: float,
    execution_lag: int,
) -> dict[str, Any]:
    """The live metrics of one model version (see the module docstring).

    Returns:
        ``{"version", "horizon", "pending", "window": {"sessions", "from", "to", "rows"},
        "models": score_forecasts(...) with ``rank_ic`` per horizon in each pooled block,
        "series": {"pooled" | symbol: {model: {horizon: {dates, ...}}}}}``; ``window`` and
        ``models`` are None when no served forecast is realised yet.
    """
    forecasts = served_to_forecasts(served, info)
    names = target_names(info.horizon)
    scored, y = forecasts.join(outcomes, names, partial=True)
    out: dict[str, Any] = {
        "version": info.version,
        "horizon": info.horizon,
        "served": len(forecasts),
        # served (symbol, session) pairs whose first outcome is not realised yet
        "pending": len(forecasts) - len(scored),
        "window": None,
        "models": None,
        "series": {},
    }
    if not len(scored):
        return out
    in_window = last_sessions(scored.dates, window_sessions)
    window, y_window = scored.take(in_window), y[in_window]
    models = score_forecasts(window, y_window, cost_bps, execution_lag)
    for name, block in models.items():
        for h, metrics in block["pooled"]["by_horizon"].items():
            metrics["rank_ic"], metrics["rank_ic_sessions"] = rank_ic(
                window.predictions[name][:, int(h) - 1],
                y_window[:, int(h) - 1],
                window.dates,
                min_rank_ic_symbols,
            )
        block["pooled"]["rank_ic"] = block["pooled"]["by_horizon"]["1"]["rank_ic"]
    _add_drift_ratios(models, window, y_window)
    days = np.unique(window.dates)
    out["window"] = {
        "sessions": len(days),
        "from": pd.Timestamp(days[0]).date().isoformat(),
        "to": pd.Timestamp(days[-1]).date().isoformat(),
        "rows": len(window),
    }
    out["models"] = models
    recent = last_sessions(scored.dates, history_sessions + series_sessions - 1)
    history, y_history = scored.take(recent), y[recent]
    served_models = [m for m in history.predictions if m not in info.baselines]
    groups = {"pooled": np.ones(len(history), bool)}
    groups.update({s: history.symbols == s for s in sorted(set(history.symbols.tolist()))})
    for group, rows in groups.items():
        part, y_part = history.take(rows), y_history[rows]
        out["series"][group] = {
            model: {
                str(h + 1): _series(part, y_part, model, h, series_sessions)
                for h in range(info.horizon)
            }
            for model in served_models
        }
    return json_safe(out)
