"""Walk-forward splits, forecast metrics, statistical tests and a long/flat backtest.

Everything here works on arrays aligned row by row: ``pred`` and ``y`` are ``[n, H]`` forward
log returns, ``symbols``/``dates`` say which row is which. The naive baseline (zero return)
is the yardstick of every ratio and of the Diebold-Mariano test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from stockml.errors import ModelError

TRADING_DAYS = 252


@dataclass(frozen=True)
class Split:
    """One walk-forward fold, as sorted arrays of session dates.

    ``fit`` trains the models, ``val`` early-stops them and fits ensemble weights and
    intervals, ``test`` scores them. ``purge`` sessions separate fit from val and val from
    test: a target over H sessions ending inside the next slice would leak it.
    """

    fold: int
    fit: pd.DatetimeIndex
    val: pd.DatetimeIndex
    test: pd.DatetimeIndex


def walk_forward_splits(
    dates: pd.DatetimeIndex | np.ndarray,
    n_folds: int,
    test_fraction: float,
    val_fraction: float,
    purge: int,
) -> list[Split]:
    """Expanding-window folds over ``dates`` (sessions of all symbols together).

    The last ``test_fraction`` of the sessions is cut into ``n_folds`` consecutive test
    blocks. Fold k trains on every session before its test block (less the purge), with the
    last ``val_fraction`` of that history as the validation slice.

    Raises:
        ModelError: too few sessions for the requested folds.
    """
    days = pd.DatetimeIndex(pd.unique(pd.DatetimeIndex(dates))).sort_values()
    n = len(days)
    n_test = int(n * test_fraction)
    block = n_test // max(n_folds, 1)
    if n_folds < 1 or block < 1:
        raise ModelError(f"{n} sessions cannot hold {n_folds} test folds of {test_fraction:.0%}")
    splits = []
    first_test = n - block * n_folds
    for k in range(n_folds):
        start = first_test + k * block
        end = n if k == n_folds - 1 else start + block
        history = start - purge
        fit, val = split_fit_val(days[:history], val_fraction, purge)
        splits.append(Split(fold=k, fit=fit, val=val, test=days[start:end]))
    return splits


def split_fit_val(
    days: pd.DatetimeIndex, val_fraction: float, purge: int
) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex]:
    """The last ``val_fraction`` of ``days`` as validation, the rest (less ``purge``) to fit.

    Raises:
        ModelError: too few sessions for a fit and a validation slice.
    """
    n_val = max(int(len(days) * val_fraction), 1)
    fit_end = len(days) - n_val - purge
    if fit_end < 2:
        raise ModelError(f"{len(days)} sessions are too few for a fit and a validation slice")
    return days[:fit_end], days[len(days) - n_val :]


def conformal_intervals(y_val: np.ndarray, pred_val: np.ndarray, level: float) -> dict[str, Any]:
    """Residual quantiles per horizon on validation: the band is ``pred + lo .. pred + hi``.

    The "higher"/"lower" quantile methods round outward so the band is not narrower than the
    validation residuals warrant.
    """
    resid = np.asarray(y_val, np.float64) - np.asarray(pred_val, np.float64)
    alpha = (1.0 - level) / 2.0
    lo = np.nanquantile(resid, alpha, axis=0, method="lower")
    hi = np.nanquantile(resid, 1.0 - alpha, axis=0, method="higher")
    return {"level": level, "lo": [float(v) for v in lo], "hi": [float(v) for v in hi]}


def interval_coverage(y: np.ndarray, pred: np.ndarray, interval: dict[str, Any]) -> list[float]:
    """Share of rows per horizon whose actual return lies inside the band."""
    lo = pred + np.asarray(interval["lo"])
    hi = pred + np.asarray(interval["hi"])
    return [float(v) for v in ((y >= lo) & (y <= hi)).mean(axis=0)]


# --------------------------------------------------------------------------- tests


def diebold_mariano(
    loss_model: np.ndarray, loss_base: np.ndarray, horizon: int
) -> tuple[float | None, float | None]:
    """Diebold-Mariano test of equal accuracy (Harvey-Leybourne-Newbold small-sample form).

    ``loss_*`` are per-period losses (e.g. squared errors) in time order. The long-run
    variance uses ``horizon - 1`` autocovariances: h-step forecasts overlap. A negative
    statistic means the model's loss is lower. Returns ``(stat, two-sided p)`` or Nones when
    the loss differential has no variance (e.g. the model is the baseline).
    """
    d = np.asarray(loss_model, np.float64) - np.asarray(loss_base, np.float64)
    d = d[np.isfinite(d)]
    n = len(d)
    if n < 3:
        return None, None
    centred = d - d.mean()
    lrv = float(centred @ centred) / n
    for k in range(1, min(horizon, n - 1)):
        lrv += 2.0 * float(centred[k:] @ centred[:-k]) / n
    if not lrv > 1e-30:
        return None, None
    stat = d.mean() / math.sqrt(lrv / n)
    correction = (n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n
    stat *= math.sqrt(max(correction, 0.0))
    return float(stat), float(2.0 * stats.t.sf(abs(stat), df=n - 1))


def directional(pred: np.ndarray, y: np.ndarray) -> tuple[float | None, float | None, int]:
    """Directional accuracy, one-sided binomial p-value vs a coin (0.5), and the rows counted.

    Rows where the forecast or the outcome is exactly zero have no direction and are skipped,
    so the naive zero-return forecast has no directional accuracy at all.
    """
    mask = (pred != 0) & (y != 0) & np.isfinite(pred) & np.isfinite(y)
    n = int(mask.sum())
    if n == 0:
        return None, None, 0
    hits = int((np.sign(pred[mask]) == np.sign(y[mask])).sum())
    return hits / n, float(stats.binomtest(hits, n, 0.5, alternative="greater").pvalue), n


def information_coefficient(pred: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rank correlation of forecast and outcome (None for a constant forecast)."""
    if len(pred) < 3 or np.all(pred == pred[0]) or np.all(y == y[0]):
        return None
    rho = stats.spearmanr(pred, y).statistic
    return None if not np.isfinite(rho) else float(rho)


# --------------------------------------------------------------------------- backtest


def backtest(
    pred_1: np.ndarray, y_1: np.ndarray, symbols: np.ndarray, dates: np.ndarray, cost_bps: float
) -> dict[str, Any]:
    """Long/flat on each symbol from the 1-session forecast, equal weight across symbols.

    Long for the next session when the forecast log return is positive, flat otherwise; each
    change of position pays ``cost_bps`` of the traded value. Buy-and-hold holds every symbol
    all the time (one entry cost, ignored).
    """
    frame = pd.DataFrame({"symbol": symbols, "date": dates, "pred": pred_1, "ret": np.expm1(y_1)})
    frame = frame.sort_values(["symbol", "date"])
    position = (frame["pred"] > 0).astype(float)
    turnover = position.groupby(frame["symbol"]).diff().abs().fillna(position)
    frame["strategy"] = position * frame["ret"] - turnover * cost_bps / 1e4
    frame["position"] = position
    daily = frame.groupby("date")[["strategy", "ret", "position"]].mean().sort_index()
    strategy, hold = (
        _performance(daily["strategy"].to_numpy()),
        _performance(daily["ret"].to_numpy()),
    )
    return {
        "cost_bps": cost_bps,
        "strategy": strategy,
        "buy_and_hold": hold,
        "exposure": float(daily["position"].mean()),
        "trades": int(turnover.sum()),
        "excess_annual_return": None
        if strategy["annual_return"] is None or hold["annual_return"] is None
        else strategy["annual_return"] - hold["annual_return"],
    }


def equity_curves(
    pred_1: np.ndarray, y_1: np.ndarray, symbols: np.ndarray, dates: np.ndarray, cost_bps: float
) -> pd.DataFrame:
    """Daily equity of the long/flat strategy and of buy-and-hold (both start at 1)."""
    frame = pd.DataFrame({"symbol": symbols, "date": dates, "pred": pred_1, "ret": np.expm1(y_1)})
    frame = frame.sort_values(["symbol", "date"])
    position = (frame["pred"] > 0).astype(float)
    turnover = position.groupby(frame["symbol"]).diff().abs().fillna(position)
    frame["strategy"] = position * frame["ret"] - turnover * cost_bps / 1e4
    daily = frame.groupby("date")[["strategy", "ret"]].mean().sort_index()
    return (1.0 + daily).cumprod().rename(columns={"ret": "buy_and_hold"})


def _performance(returns: np.ndarray) -> dict[str, float | None]:
    returns = returns[np.isfinite(returns)]
    if len(returns) < 2:
        return {"annual_return": None, "sharpe": None, "max_drawdown": None}
    equity = np.cumprod(1.0 + returns)
    years = len(returns) / TRADING_DAYS
    sd = returns.std(ddof=1)
    return {
        "annual_return": float(equity[-1] ** (1.0 / years) - 1.0) if equity[-1] > 0 else -1.0,
        "sharpe": float(returns.mean() / sd * math.sqrt(TRADING_DAYS)) if sd > 0 else None,
        "max_drawdown": float((equity / np.maximum.accumulate(equity) - 1.0).min()),
    }


# --------------------------------------------------------------------------- metrics


def horizon_metrics(
    pred: np.ndarray, y: np.ndarray, dates: np.ndarray, horizon: int
) -> dict[str, Any]:
    """Metrics of one horizon's forecasts ``pred`` against outcomes ``y`` (log returns).

    The Diebold-Mariano test compares squared errors with the naive forecast's (zero), after
    averaging each session's loss differential over symbols: sessions are the time axis.
    """
    ok = np.isfinite(pred) & np.isfinite(y)
    pred, y, dates = pred[ok], y[ok], dates[ok]
    n = len(y)
    if n == 0:
        return {"n": 0}
    err = pred - y
    rmse = float(np.sqrt(np.mean(err**2)))
    rmse_naive = float(np.sqrt(np.mean(y**2)))
    accuracy, pvalue, n_dir = directional(pred, y)
    losses = (
        pd.DataFrame({"date": dates, "model": err**2, "naive": y**2})
        .groupby("date")
        .mean()
        .sort_index()
    )
    dm_stat, dm_p = diebold_mariano(losses["model"].to_numpy(), losses["naive"].to_numpy(), horizon)
    return {
        "n": n,
        "rmse": rmse,
        "mae": float(np.mean(np.abs(err))),
        "rmse_naive": rmse_naive,
        "rmse_ratio_vs_naive": rmse / rmse_naive if rmse_naive > 0 else None,
        # price error: predicted price / actual price - 1 = exp(pred - y) - 1 (same last close)
        "mape": float(np.mean(np.abs(np.expm1(pred - y))) * 100.0),
        "directional_accuracy": accuracy,
        "directional_pvalue": pvalue,
        "n_directional": n_dir,
        "ic": information_coefficient(pred, y),
        "dm_stat": dm_stat,
        "dm_pvalue": dm_p,
    }


def score(
    pred: np.ndarray, y: np.ndarray, symbols: np.ndarray, dates: np.ndarray, cost_bps: float
) -> dict[str, Any]:
    """Headline metrics (horizon 1) + per-horizon metrics + the backtest, for one set of rows."""
    horizon = y.shape[1]
    by_horizon = {
        str(h + 1): horizon_metrics(pred[:, h], y[:, h], dates, h + 1) for h in range(horizon)
    }
    out = dict(by_horizon["1"])
    out["by_horizon"] = by_horizon
    out["backtest"] = backtest(pred[:, 0], y[:, 0], symbols, dates, cost_bps)
    return out


def evaluate_predictions(
    predictions: dict[str, np.ndarray],
    y: np.ndarray,
    symbols: np.ndarray,
    dates: np.ndarray,
    cost_bps: float,
) -> dict[str, Any]:
    """``{model: {"pooled": metrics, "per_symbol": {symbol: metrics}}}`` for every model.

    Args:
        predictions: model name -> ``[n, H]`` out-of-sample log-return forecasts (include
            the baselines: "naive" and "drift").
        y: outcomes ``[n, H]``; symbols, dates: ``[n]`` row labels.
        cost_bps: transaction cost of the backtest.
    """
    symbols = np.asarray(symbols)
    dates = np.asarray(dates)
    out: dict[str, Any] = {}
    for name, pred in predictions.items():
        per_symbol = {}
        for symbol in sorted(set(symbols.tolist())):
            rows = symbols == symbol
            per_symbol[symbol] = score(pred[rows], y[rows], symbols[rows], dates[rows], cost_bps)
        out[name] = {"pooled": score(pred, y, symbols, dates, cost_bps), "per_symbol": per_symbol}
    return out


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN/inf replaced by None and numpy scalars by Python ones (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, pd.Timestamp):
        return obj.date().isoformat()
    return obj
