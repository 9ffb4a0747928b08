"""Walk-forward splits, forecast metrics, statistical tests, calibrated intervals and a
long/flat backtest.

Everything here works on arrays aligned row by row: ``pred`` and ``y`` are ``[n, H]`` forward
log returns, ``symbols``/``dates`` say which row is which. Symbols are a dimension, never an
assumption: every test that pools several symbols first averages each session's values over
the symbols (sessions are the time axis, and symbols on one date are not independent), and
every statistic of overlapping h-session outcomes uses a HAC variance.

The yardsticks are the naive (zero return) and drift (training mean) baselines: each model is
tested against the better of the two on the same rows (``dm_pvalue_vs_best_baseline``), and its
directional accuracy against always-long, not against a coin.

``score_forecasts`` is the one scoring path: walk-forward, forward tests of a published bundle
and any later comparison of served forecasts with realised prices all call it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from stockml import stats
from stockml.errors import ModelError

TRADING_DAYS = 252
BASELINES = ("naive", "drift")


# --------------------------------------------------------------------------- splits


@dataclass(frozen=True)
class Split:
    """One walk-forward fold, as sorted arrays of session dates.

    ``fit`` trains the models, ``val`` chooses their iterations (early stopping) and the
    ensemble weights, ``cal`` calibrates the intervals (never used for either), ``test``
    scores them. ``history`` is every session before the test block less the purge: what the
    refit learns from. ``purge`` sessions separate the slices: a target over H sessions
    ending inside the next slice would leak it.
    """

    fold: int
    fit: pd.DatetimeIndex
    val: pd.DatetimeIndex
    cal: pd.DatetimeIndex
    history: pd.DatetimeIndex
    test: pd.DatetimeIndex


def walk_forward_splits(
    dates: pd.DatetimeIndex | np.ndarray,
    n_folds: int,
    test_fraction: float,
    val_fraction: float,
    calibration_fraction: float,
    purge: int,
) -> list[Split]:
    """Expanding-window folds over ``dates`` (sessions of all symbols together).

    The last ``test_fraction`` of the sessions is cut into ``n_folds`` consecutive test
    blocks. Fold k learns from every session before its test block (less the purge), split
    by ``split_history``.

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
        history = days[: start - purge]
        fit, val, cal = split_history(history, val_fraction, calibration_fraction, purge)
        splits.append(Split(k, fit, val, cal, history, days[start:end]))
    return splits


def split_history(
    days: pd.DatetimeIndex, val_fraction: float, calibration_fraction: float, purge: int
) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex, pd.DatetimeIndex]:
    """``fit | purge | val | purge | cal`` over ``days``: the newest ``calibration_fraction``
    calibrates the intervals, the ``val_fraction`` before it chooses iterations and weights.

    Raises:
        ModelError: too few sessions for the three slices.
    """
    n = len(days)
    n_cal = max(int(n * calibration_fraction), 1)
    n_val = max(int(n * val_fraction), 1)
    cal_start = n - n_cal
    val_end = cal_start - purge
    val_start = val_end - n_val
    fit_end = val_start - purge
    if fit_end < 2 or val_end <= val_start:
        raise ModelError(f"{n} sessions are too few for fit, validation and calibration slices")
    return days[:fit_end], days[val_start:val_end], days[cal_start:]


# --------------------------------------------------------------------------- intervals


def conformal_band(
    y: np.ndarray, pred: np.ndarray, scale: np.ndarray, level: float
) -> dict[str, Any]:
    """Split-conformal bounds of the scaled residuals ``(y - pred) / scale``, per horizon.

    Each tail gets ``(1 - level) / 2``: the lower bound is the ``floor((n + 1) a)``-th smallest
    scaled residual and the upper the ``ceil((n + 1) (1 - a))``-th, so a fresh exchangeable
    row falls below (above) the band with probability at most ``a`` each. The band of a row
    is ``pred + scale * lo .. pred + scale * hi``: with ``scale`` a recent volatility the band
    widens and narrows with the regime instead of holding one width for all of them.

    Args:
        y, pred: ``[n, H]`` outcomes and forecasts on the calibration slice (never used to
            fit the model, stop its training or weigh it).
        scale: ``[n]`` positive scale per row (ones for fixed-width bands).
        level: nominal coverage, e.g. 0.9.

    Raises:
        ModelError: too few rows for the level (n + 1 < 2 / (1 - level)).
    """
    resid = (np.asarray(y, np.float64) - np.asarray(pred, np.float64)) / np.asarray(
        scale, np.float64
    )[:, None]
    alpha = (1.0 - level) / 2.0
    lo, hi = [], []
    for h in range(resid.shape[1]):
        r = np.sort(resid[np.isfinite(resid[:, h]), h])
        n = len(r)
        # the epsilon absorbs float error: (1 - 0.9) / 2 * 40 must be 2, not 1.9999...
        k_lo = math.floor((n + 1) * alpha + 1e-9)
        k_hi = math.ceil((n + 1) * (1.0 - alpha) - 1e-9)
        if k_lo < 1 or k_hi > n:
            raise ModelError(f"{n} calibration rows are too few for a {level:.0%} band")
        lo.append(float(r[k_lo - 1]))
        hi.append(float(r[k_hi - 1]))
    return {"level": level, "lo": lo, "hi": hi, "n": int(resid.shape[0])}


def band_bounds(
    pred: np.ndarray, scale: np.ndarray, band: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper log-return bounds ``[n, H]`` of forecasts ``pred`` with ``band``."""
    s = np.asarray(scale, np.float64)[:, None]
    return pred + s * np.asarray(band["lo"]), pred + s * np.asarray(band["hi"])


def interval_coverage(y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> list[float]:
    """Share of rows per horizon whose outcome lies inside ``[lower, upper]``."""
    inside = (y >= lower) & (y <= upper)
    return [float(v) for v in inside.mean(axis=0)]


# --------------------------------------------------------------------------- tests


def newey_west_lags(n: int) -> int:
    """Newey and West's (1994) rule of thumb for the Bartlett kernel: floor(4 (n/100)^(2/9))."""
    return int(math.floor(4.0 * (n / 100.0) ** (2.0 / 9.0)))


def hac_variance(x: np.ndarray, lags: int) -> float:
    """Long-run variance of ``x`` (Newey-West, Bartlett weights ``1 - j / (lags + 1)``).

    Divides by n (as statsmodels' ``S_hac_simple`` does); the variance of the mean is this / n.
    """
    c = np.asarray(x, np.float64) - np.mean(x)
    n = len(c)
    out = float(c @ c) / n
    for j in range(1, min(lags, n - 1) + 1):
        out += 2.0 * (1.0 - j / (lags + 1.0)) * float(c[j:] @ c[:-j]) / n
    return out


def per_date_mean(values: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """``values`` averaged over the rows of each date, in date order (the time series of a
    pooled multi-symbol test)."""
    frame = pd.DataFrame({"date": dates, "v": np.asarray(values, np.float64)})
    return frame.groupby("date", sort=True)["v"].mean().to_numpy()


def diebold_mariano(
    loss_model: np.ndarray, loss_base: np.ndarray, horizon: int, alternative: str = "two-sided"
) -> tuple[float | None, float | None]:
    """Diebold-Mariano test of equal accuracy, in Harvey-Leybourne-Newbold's small-sample form.

    ``loss_*`` are per-period losses (e.g. squared errors) in time order. The long-run
    variance of the loss differential uses ``horizon - 1`` autocovariances (h-step forecasts
    overlap; Bartlett weights if that estimate is not positive); the statistic is scaled by
    HLN's factor and compared with Student's t with n - 1 degrees of freedom.

    Args:
        alternative: ``"two-sided"``, or ``"less"``: the model's loss is lower than the
            baseline's (the one-sided test of a model beating its baseline).

    Returns:
        ``(stat, p)``; a negative statistic means the model's loss is lower. Nones when the
        loss differential has no variance (e.g. the model is the baseline).
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
    if not lrv > 0:
        lrv = hac_variance(d, horizon - 1)
    if not lrv > 1e-30:
        return None, None
    stat = d.mean() / math.sqrt(lrv / n)
    correction = (n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n
    stat *= math.sqrt(max(correction, 0.0))
    if alternative == "less":
        p = stats.t_cdf(stat, n - 1)
    elif alternative == "two-sided":
        p = 2.0 * stats.t_sf(abs(stat), n - 1)
    else:
        raise ValueError(f"alternative must be 'two-sided' or 'less', got {alternative!r}")
    return float(stat), p


def directional_test(
    pred: np.ndarray, y: np.ndarray, dates: np.ndarray, horizon: int
) -> dict[str, Any]:
    """Directional accuracy tested against always-long on the same rows.

    Rows where the forecast or the outcome is exactly zero have no direction and are skipped
    (the naive zero-return forecast has no directional accuracy). Per row, ``d = hit(model) -
    hit(always long)``; ``d`` is averaged per date (symbols on one date are not independent),
    then its mean is tested > 0 with a Newey-West variance using
    ``max(horizon - 1, newey_west_lags(n))`` lags (h-session outcomes overlap), one-sided,
    normal approximation.

    Returns:
        ``directional_accuracy``, ``directional_accuracy_always_long``,
        ``directional_pvalue`` (H1: the model beats always-long), ``n_directional``.
    """
    mask = (pred != 0) & (y != 0) & np.isfinite(pred) & np.isfinite(y)
    n = int(mask.sum())
    out: dict[str, Any] = {
        "directional_accuracy": None,
        "directional_accuracy_always_long": None,
        "directional_pvalue": None,
        "n_directional": n,
    }
    if n == 0:
        return out
    hit = (np.sign(pred[mask]) == np.sign(y[mask])).astype(np.float64)
    long_hit = (y[mask] > 0).astype(np.float64)
    out["directional_accuracy"] = float(hit.mean())
    out["directional_accuracy_always_long"] = float(long_hit.mean())
    d = per_date_mean(hit - long_hit, dates[mask])
    if len(d) < 3:
        return out
    lrv = hac_variance(d, max(horizon - 1, newey_west_lags(len(d))))
    if lrv > 1e-30:
        z = float(d.mean() / math.sqrt(lrv / len(d)))
        out["directional_pvalue"] = stats.norm_sf(z)
    return out


def information_coefficient(pred: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rank correlation of forecast and outcome (None for a constant forecast)."""
    if len(pred) < 3 or np.all(pred == pred[0]) or np.all(y == y[0]):
        return None
    rho = stats.spearman(pred, y)
    return None if not np.isfinite(rho) else rho


def session_losses(err: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """Squared errors averaged per session, in date order."""
    return per_date_mean(err**2, dates)


# --------------------------------------------------------------------------- backtest


def _positions(frame: pd.DataFrame, execution_lag: int) -> pd.Series:
    """Long (1) when the forecast made ``execution_lag`` sessions earlier was positive."""
    signal = (frame["pred"] > 0).astype(float)
    if execution_lag:
        signal = signal.groupby(frame["symbol"]).shift(execution_lag).fillna(0.0)
    return signal


def _daily_strategy(
    pred_1: np.ndarray,
    y_1: np.ndarray,
    symbols: np.ndarray,
    dates: np.ndarray,
    cost_bps: float,
    execution_lag: int,
) -> tuple[pd.DataFrame, float]:
    frame = pd.DataFrame({"symbol": symbols, "date": dates, "pred": pred_1, "ret": np.expm1(y_1)})
    frame = frame.sort_values(["symbol", "date"])
    position = _positions(frame, execution_lag)
    turnover = position.groupby(frame["symbol"]).diff().abs().fillna(position)
    frame["strategy"] = position * frame["ret"] - turnover * cost_bps / 1e4
    frame["position"] = position
    daily = frame.groupby("date")[["strategy", "ret", "position"]].mean().sort_index()
    return daily, float(turnover.sum())


def backtest(
    pred_1: np.ndarray,
    y_1: np.ndarray,
    symbols: np.ndarray,
    dates: np.ndarray,
    cost_bps: float,
    execution_lag: int = 1,
) -> dict[str, Any]:
    """Long/flat on each symbol from the 1-session forecast, equal weight across symbols.

    The row of session t earns the return from t's close to t+1's. Long over that session
    when the forecast made ``execution_lag`` sessions earlier was positive (lag 0 trades at
    the signal's own close, which is optimistic: a session's features exist only after its
    close; lag 1 trades at the next close), flat otherwise; each change of position pays
    ``cost_bps`` of the traded value. Buy-and-hold holds every symbol all the time (one entry
    cost, ignored).
    """
    daily, trades = _daily_strategy(pred_1, y_1, symbols, dates, cost_bps, execution_lag)
    strategy = _performance(daily["strategy"].to_numpy())
    hold = _performance(daily["ret"].to_numpy())
    return {
        "cost_bps": cost_bps,
        "execution_lag": execution_lag,
        "strategy": strategy,
        "buy_and_hold": hold,
        "exposure": float(daily["position"].mean()),
        "trades": int(trades),
        "excess_annual_return": None
        if strategy["annual_return"] is None or hold["annual_return"] is None
        else strategy["annual_return"] - hold["annual_return"],
    }


def equity_curves(
    pred_1: np.ndarray,
    y_1: np.ndarray,
    symbols: np.ndarray,
    dates: np.ndarray,
    cost_bps: float,
    execution_lag: int = 1,
) -> pd.DataFrame:
    """Daily equity of the long/flat strategy and of buy-and-hold (both start at 1)."""
    daily, _ = _daily_strategy(pred_1, y_1, symbols, dates, cost_bps, execution_lag)
    return (1.0 + daily[["strategy", "ret"]]).cumprod().rename(columns={"ret": "buy_and_hold"})


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
    pred: np.ndarray,
    y: np.ndarray,
    dates: np.ndarray,
    horizon: int,
    baselines: dict[str, np.ndarray],
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> dict[str, Any]:
    """Metrics of one horizon's forecasts ``pred`` against outcomes ``y`` (log returns).

    Args:
        pred, y, dates: ``[n]`` forecasts, outcomes and their sessions.
        horizon: h (sets the overlap the HAC variances allow for).
        baselines: ``{"naive": [n], "drift": [n]}`` forecasts on the same rows; the model is
            tested against the one with the lower squared error here (``best_baseline``).
        lower, upper: ``[n]`` interval bounds, for ``interval_coverage`` and ``interval_width``.
    """
    ok = np.isfinite(pred) & np.isfinite(y)
    pred, y, dates = pred[ok], y[ok], dates[ok]
    baselines = {k: np.asarray(v)[ok] for k, v in baselines.items()}
    n = len(y)
    if n == 0:
        return {"n": 0}
    err = pred - y
    rmse = float(np.sqrt(np.mean(err**2)))
    rmse_naive = float(np.sqrt(np.mean(y**2)))
    losses = session_losses(err, dates)
    dm_stat, dm_p = diebold_mariano(losses, session_losses(y, dates), horizon)
    out: dict[str, Any] = {
        "n": n,
        "n_sessions": len(losses),
        "rmse": rmse,
        "mae": float(np.mean(np.abs(err))),
        "rmse_naive": rmse_naive,
        "rmse_ratio_vs_naive": rmse / rmse_naive if rmse_naive > 0 else None,
        # price error: predicted price / actual price - 1 = exp(pred - y) - 1 (same last close)
        "mape": float(np.mean(np.abs(np.expm1(pred - y))) * 100.0),
        **directional_test(pred, y, dates, horizon),
        "ic": information_coefficient(pred, y),
        # two-sided, against naive (kept for comparison with older reports)
        "dm_stat": dm_stat,
        "dm_pvalue": dm_p,
    }
    out.update(_versus_best_baseline(pred, y, dates, horizon, baselines, rmse))
    if lower is not None and upper is not None:
        lo, hi = np.asarray(lower)[ok], np.asarray(upper)[ok]
        out["interval_coverage"] = float(np.mean((y >= lo) & (y <= hi)))
        out["interval_width"] = float(np.mean(hi - lo))
    return out


def _versus_best_baseline(
    pred: np.ndarray,
    y: np.ndarray,
    dates: np.ndarray,
    horizon: int,
    baselines: dict[str, np.ndarray],
    rmse: float,
) -> dict[str, Any]:
    """The better baseline on these rows and a one-sided DM test of the model against it."""
    if not baselines:
        return {}
    mse = {name: float(np.mean((b - y) ** 2)) for name, b in baselines.items()}
    best = min(sorted(mse), key=lambda k: mse[k])
    out: dict[str, Any] = {
        "best_baseline": best,
        "rmse_ratio_vs_best_baseline": rmse / math.sqrt(mse[best]) if mse[best] > 0 else None,
        "dm_stat_vs_best_baseline": None,
        "dm_pvalue_vs_best_baseline": None,
    }
    if np.array_equal(pred, baselines[best]):
        return out  # the model is that baseline: nothing to test
    stat, p = diebold_mariano(
        session_losses(pred - y, dates),
        session_losses(baselines[best] - y, dates),
        horizon,
        alternative="less",
    )
    out["dm_stat_vs_best_baseline"], out["dm_pvalue_vs_best_baseline"] = stat, p
    return out


@dataclass(frozen=True)
class Forecasts:
    """Forecasts of several models for the same rows, with optional interval bounds.

    The unit every scoring path shares: walk-forward folds, forward tests of a published
    bundle, and served forecasts joined with the prices realised after them.

    Attributes:
        symbols, dates: ``[n]`` which row is which.
        predictions: ``{model: [n, H]}`` log-return forecasts (baselines included).
        lower, upper: ``{model: [n, H]}`` interval bounds (models without a band absent).
        scores: ``{model: [n, H]}`` ranking scores of a universe model (its forecast return
            is derived from them: ``stockml.train``); empty for a forecaster of returns.
    """

    symbols: np.ndarray
    dates: np.ndarray
    predictions: dict[str, np.ndarray]
    lower: dict[str, np.ndarray] = field(default_factory=dict)
    upper: dict[str, np.ndarray] = field(default_factory=dict)
    scores: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.dates)

    def take(self, mask: np.ndarray) -> Forecasts:
        return Forecasts(
            self.symbols[mask],
            self.dates[mask],
            {k: v[mask] for k, v in self.predictions.items()},
            {k: v[mask] for k, v in self.lower.items()},
            {k: v[mask] for k, v in self.upper.items()},
            {k: v[mask] for k, v in self.scores.items()},
        )

    @staticmethod
    def concat(parts: list[Forecasts]) -> Forecasts:
        first = parts[0]
        return Forecasts(
            np.concatenate([p.symbols for p in parts]),
            np.concatenate([p.dates for p in parts]),
            {k: np.concatenate([p.predictions[k] for p in parts]) for k in first.predictions},
            {k: np.concatenate([p.lower[k] for p in parts]) for k in first.lower},
            {k: np.concatenate([p.upper[k] for p in parts]) for k in first.upper},
            {k: np.concatenate([p.scores[k] for p in parts]) for k in first.scores},
        )

    def join(
        self, outcomes: pd.DataFrame, target_names: list[str], partial: bool = False
    ) -> tuple[Forecasts, np.ndarray]:
        """These forecasts with their realised outcomes, on the rows where all are known.

        Args:
            outcomes: ``symbol, date, <target_names>`` (forward log returns realised after
                each date, e.g. the features table's targets).
            target_names: the H outcome columns, horizon order.
            partial: keep the rows whose FIRST outcome is known, the later ones NaN until
                they are realised (the metrics skip NaN per horizon): a live monitor scores
                each horizon as soon as its outcome exists.

        Returns:
            ``(forecasts of the matched rows, y [m, H])``.
        """
        keys = pd.DataFrame(
            {"symbol": self.symbols.astype(str), "date": pd.to_datetime(self.dates)}
        )
        right = outcomes[["symbol", "date", *target_names]].copy()
        right["symbol"] = right["symbol"].astype(str)
        right["date"] = pd.to_datetime(right["date"])
        merged = keys.merge(right, on=["symbol", "date"], how="left", validate="many_to_one")
        y = merged[target_names].to_numpy(np.float64)
        known = np.isfinite(y[:, 0]) if partial else np.isfinite(y).all(axis=1)
        return self.take(known), y[known]


def score_forecasts(
    forecasts: Forecasts,
    y: np.ndarray,
    cost_bps: float,
    execution_lag: int = 1,
    per_symbol: bool = True,
) -> dict[str, Any]:
    """``{model: {"pooled": metrics, "per_symbol": {symbol: metrics}}}`` for every model.

    Pooled metrics are over all rows (tests average per date first); per-symbol metrics over
    each symbol's rows (``per_symbol=False``: none, e.g. for a universe of hundreds of
    symbols, where they would cost minutes and the cross-sectional figures are the test).
    Every model is compared with the baselines in ``forecasts`` (``naive``/``drift``) on the
    same rows.
    """
    symbols = np.asarray(forecasts.symbols)
    out: dict[str, Any] = {}
    names = sorted(set(symbols.tolist())) if per_symbol else []
    for name in forecasts.predictions:
        per_symbol_metrics = {}
        for symbol in names:
            rows = symbols == symbol
            per_symbol_metrics[symbol] = score(
                forecasts.take(rows), name, y[rows], cost_bps, execution_lag
            )
        out[name] = {
            "pooled": score(forecasts, name, y, cost_bps, execution_lag),
            "per_symbol": per_symbol_metrics,
        }
    return out


def score(
    forecasts: Forecasts, name: str, y: np.ndarray, cost_bps: float, execution_lag: int = 1
) -> dict[str, Any]:
    """Headline metrics (horizon 1) + per-horizon metrics + the backtest of one model."""
    pred = forecasts.predictions[name]
    lower, upper = forecasts.lower.get(name), forecasts.upper.get(name)
    baselines = {b: forecasts.predictions[b] for b in BASELINES if b in forecasts.predictions}
    by_horizon = {
        str(h + 1): horizon_metrics(
            pred[:, h],
            y[:, h],
            forecasts.dates,
            h + 1,
            {b: p[:, h] for b, p in baselines.items()},
            None if lower is None else lower[:, h],
            None if upper is None else upper[:, h],
        )
        for h in range(y.shape[1])
    }
    out = dict(by_horizon["1"])
    out["by_horizon"] = by_horizon
    out["backtest"] = backtest(
        pred[:, 0], y[:, 0], forecasts.symbols, forecasts.dates, cost_bps, execution_lag
    )
    return out


def fold_metrics(forecasts: Forecasts, y: np.ndarray) -> dict[str, dict[str, list[Any]]]:
    """Per model and horizon on one fold's test rows: RMSE ratios to naive and to the better
    baseline, interval coverage and mean width (lists indexed by horizon - 1)."""
    baselines = {b: forecasts.predictions[b] for b in BASELINES if b in forecasts.predictions}
    mse_naive = np.mean(y**2, axis=0)
    mse_best = np.min([np.mean((p - y) ** 2, axis=0) for p in baselines.values()], axis=0)
    out: dict[str, dict[str, list[Any]]] = {}
    for name, pred in forecasts.predictions.items():
        mse = np.mean((pred - y) ** 2, axis=0)
        block: dict[str, list[Any]] = {
            "rmse_ratio_vs_naive": list(np.sqrt(mse / mse_naive)),
            "rmse_ratio_vs_best_baseline": list(np.sqrt(mse / mse_best)),
        }
        if name in forecasts.lower:
            block["interval_coverage"] = interval_coverage(
                y, forecasts.lower[name], forecasts.upper[name]
            )
            block["interval_width"] = [
                float(v) for v in np.mean(forecasts.upper[name] - forecasts.lower[name], axis=0)
            ]
        out[name] = block
    return json_safe(out)


def paired_test(
    challenger: np.ndarray, champion: np.ndarray, y: np.ndarray, dates: np.ndarray, horizon: int
) -> dict[str, Any]:
    """Is the challenger significantly WORSE than the champion on the same rows?

    One-sided Diebold-Mariano (HLN) on per-session squared errors, H1: the champion's loss is
    lower. Returns the sessions compared, both RMSEs, the statistic and the p-value.
    """
    ok = np.isfinite(challenger) & np.isfinite(champion) & np.isfinite(y)
    c, k, t, d = challenger[ok], champion[ok], y[ok], dates[ok]
    stat, p = diebold_mariano(
        session_losses(k - t, d), session_losses(c - t, d), horizon, alternative="less"
    )
    return {
        "n_sessions": int(len(np.unique(d))),
        "rmse_challenger": float(np.sqrt(np.mean((c - t) ** 2))) if len(t) else None,
        "rmse_champion": float(np.sqrt(np.mean((k - t) ** 2))) if len(t) else None,
        "dm_stat": stat,
        "pvalue_challenger_worse": p,
    }


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN/inf replaced by None and numpy scalars by Python ones (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, pd.Timestamp):
        return obj.date().isoformat()
    return obj
