"""The trainer: from a feature ``Dataset`` to evaluated models, their ONNX twins and a bundle.

How one set of models is fitted on a history (``fit_candidates``)::

    fit | purge | val | purge | cal                     (then, with evaluation.refit)
    members fit on ``fit``, early-stopped on ``val``    every member refitted on ALL the
    ensemble weights (simplex, per horizon) on ``val``  history for the iterations chosen
    conformal bands calibrated on ``cal`` (untouched    on ``val``; weights and bands kept
    by early stopping and weights)

``walk_forward`` does exactly this for every fold (history = sessions before its test block,
less a purge) and scores the test blocks; ``train`` does it once more on all labelled history
(the published model), exports every model (the ensemble included) to ONNX with a parity
check, applies the promotion gate (``stockml.gate``) to the walk-forward evidence and writes
the bundle folder. Loading from the store, MLflow and publishing are
``stockml.orchestration``'s.

Universe mode (``ModelConfig.for_universe()``): the models learn a target relative to the
universe of each date (``universe.target``: the forward return's per-date rank, or its excess
over the date's mean; ``stockml.ranking.universe_labels``) and stop early on the validation
slice's mean daily rank IC. Their outputs are ranking *scores*; a forecast return for
``/predict`` is ``drift + beta * (score - centre)`` per model and horizon, with ``beta >= 0``
the validation slice's pooled slope of the excess return on the per-date demeaned score
(``beta = 0``: the score has no validated relation to returns and the forecast is the drift
baseline's). Point metrics, bands and prices use that return; the cross-sectional figures
(``stockml.ranking.universe_report``: rank IC, long-short and top-k portfolios, the classic
single factors on the same rows) use the scores.

Input is a feature frame in the feature library's contract (``symbol, date, close,
adj_close, <features>, target_1..target_H``).
"""

from __future__ import annotations

import logging
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stockml import evaluation, ranking
from stockml.bundle import (
    DRIFT_WINDOW,
    EVALUATION_DIR,
    PREDICTIONS,
    FeatureDistribution,
    FeatureSpec,
    Manifest,
    interval_scale,
    score_to_return,
    write_bundle,
)
from stockml.errors import FeatureError, ModelError
from stockml.evaluation import BASELINES, Forecasts
from stockml.gate import Champion, GateResult, assess, compare_with_champion
from stockml.model_config import ModelConfig
from stockml.models import (
    DriftModel,
    LightGBMModel,
    LSTMModel,
    Model,
    NaiveModel,
    XGBoostModel,
    model_entry,
)
from stockml.models.ensemble import ENSEMBLE, EnsembleModel
from stockml.models.onnx_utils import run_onnx
from stockml.models.sequences import WindowedRows
from stockml.progress import ProgressFn
from stockml.sessions import SessionTable

logger = logging.getLogger(__name__)

PARITY_ROWS = 512


def build_models(config: ModelConfig) -> list[Model]:
    """Fresh, unfitted models named in ``config.models``."""
    runtime = config.runtime
    factories: dict[str, Callable[[], Model]] = {
        "lstm": lambda: LSTMModel(config.lstm, runtime),
        "xgboost": lambda: XGBoostModel(config.xgboost, runtime),
        "lightgbm": lambda: LightGBMModel(config.lightgbm, runtime),
    }
    unknown = [m for m in config.models if m not in factories]
    if unknown or not config.models:
        raise ModelError(
            f"unknown or no models {unknown or config.models}; choose from {sorted(factories)}"
        )
    return [factories[name]() for name in config.models]


def build_ensemble(config: ModelConfig) -> EnsembleModel:
    """The unfitted ensemble of ``config.models`` (and the baselines when configured)."""
    members: list[Model] = build_models(config)
    if config.ensemble.include_baselines:
        members += [NaiveModel(), DriftModel()]
    return EnsembleModel({m.name: m for m in members})


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Dataset:
    """A feature frame with the names of its feature and target columns.

    ``feature_config`` is the feature library's configuration that produced the columns; it
    travels into the bundle's FeatureSpec so serving recomputes features the same way.
    """

    frame: pd.DataFrame
    feature_names: list[str]
    target_names: list[str]
    feature_config: dict[str, Any] = field(default_factory=dict)

    @property
    def horizon(self) -> int:
        return len(self.target_names)

    @property
    def symbols(self) -> list[str]:
        return sorted(self.frame["symbol"].astype(str).unique())


def clean_frame(
    frame: pd.DataFrame, feature_names: list[str], target_names: list[str]
) -> pd.DataFrame:
    """Sorted rows with every feature finite (drops indicator warm-up rows); targets may be NaN.

    Raises:
        FeatureError: a feature or target column is missing, or no row is left.
    """
    missing = [
        c
        for c in ["symbol", "date", "close", *feature_names, *target_names]
        if c not in frame.columns
    ]
    if missing:
        raise FeatureError(f"feature frame lacks columns {missing}")
    out = frame.loc[:, ["symbol", "date", "close", *feature_names, *target_names]].copy()
    out["symbol"] = out["symbol"].astype(str)
    out["date"] = pd.to_datetime(out["date"])
    finite = np.isfinite(out[feature_names].to_numpy(dtype=np.float64)).all(axis=1)
    out = out[finite].sort_values(["symbol", "date"]).reset_index(drop=True)
    if out.empty:
        raise FeatureError("no row of the feature frame has every feature finite")
    return out


@dataclass(frozen=True)
class Samples:
    """Model inputs aligned row by row: one row per (symbol, session) with a full window."""

    symbols: np.ndarray
    dates: np.ndarray
    close: np.ndarray
    tabular: np.ndarray  # [n, F] float32: the session's scaled feature row
    sequence: WindowedRows  # [n, window, F] float32: the window of rows ending at the session
    y: np.ndarray  # [n, H] forward log returns (NaN where the future is unknown)
    scale_raw: np.ndarray  # [n, k] raw values of the interval scale features
    # [n, H] what the models learn: ``y`` itself, or in universe mode a target relative to
    # the universe of each date (``stockml.ranking.universe_labels``)
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.dates)

    def take(self, mask: np.ndarray) -> Samples:
        return Samples(
            self.symbols[mask],
            self.dates[mask],
            self.close[mask],
            self.tabular[mask],
            self.sequence[mask],
            self.y[mask],
            self.scale_raw[mask],
            self.label[mask],
        )

    def x(self, model: Model | EnsembleModel) -> np.ndarray | WindowedRows:
        return self.sequence if model.kind == "sequence" else self.tabular

    def within(self, days: pd.DatetimeIndex, labelled: bool = True) -> Samples:
        """Rows dated in ``days`` (with every target known when ``labelled``)."""
        mask = np.isin(self.dates, days.values)
        if labelled:
            mask &= np.isfinite(self.y).all(axis=1)
        return self.take(mask)


def make_samples(
    frame: pd.DataFrame,
    spec: FeatureSpec,
    target_names: list[str],
    scale_features: list[str] | None = None,
    label_names: list[str] | None = None,
) -> Samples:
    """Scale ``frame`` with ``spec`` and cut it into aligned tabular rows and sequences.

    The tabular row of a session is the last row of its sequence, so every model sees the
    same information and all are scored on the same sessions. The sequences are windows of
    ONE scaled feature matrix by reference (:class:`WindowedRows`), not ``window`` copies of
    every row: a universe's sequences would not fit in memory. ``label_names``: the columns
    the models learn (default: the targets themselves).
    """
    window = spec.window
    scale_features = list(scale_features or [])
    parts: list[tuple[Any, ...]] = []
    blocks: list[np.ndarray] = []
    short: list[str] = []
    for symbol, rows in frame.groupby("symbol", sort=True):
        if len(rows) < window:
            short.append(str(symbol))
            continue
        scaled = spec.transform(rows)
        keep = slice(window - 1, None)
        blocks.append(scaled)
        parts.append(
            (
                rows["symbol"].to_numpy()[keep],
                rows["date"].to_numpy()[keep],
                rows["close"].to_numpy(np.float64)[keep],
                scaled[keep],
                rows[target_names].to_numpy(np.float64)[keep],
                rows[scale_features].to_numpy(np.float64).reshape(len(rows), -1)[keep],
                rows[label_names or target_names].to_numpy(np.float64)[keep],
            )
        )
    if short:
        # one line for all: a universe has a few late listings, the log stays readable
        logger.warning(
            "%d symbol(s) have fewer rows than the window %d and are skipped: %s",
            len(short),
            window,
            ", ".join(short[:10]) + (" ..." if len(short) > 10 else ""),
        )
    if not parts:
        raise FeatureError(f"no symbol has the {window} rows one input window needs")
    symbols, dates, close, tabular, y, scale_raw, label = (
        np.concatenate(c) for c in zip(*parts, strict=True)
    )
    sequence = WindowedRows.from_blocks(blocks, window)
    return Samples(symbols, dates, close, tabular, sequence, y, scale_raw, label)


def label_columns(target_names: list[str]) -> list[str]:
    """The columns a universe's relative targets are kept in, beside ``target_names``."""
    return [f"label_{name}" for name in target_names]


def with_labels(frame: pd.DataFrame, data: Dataset, config: ModelConfig) -> list[str] | None:
    """In universe mode, add the relative targets to ``frame`` (a cleaned feature frame of the
    whole universe) and return their column names; None otherwise (the models learn ``y``)."""
    if not config.universe_mode:
        return None
    names = label_columns(data.target_names)
    labels = ranking.universe_labels(frame, data.target_names, config.universe.target)
    for i, name in enumerate(names):
        frame[name] = labels[:, i]
    return names


def labelled_days(frame: pd.DataFrame, target_names: list[str], window: int) -> pd.DatetimeIndex:
    """Sorted sessions with at least one row that has a full window and every target known."""
    full_window = frame.groupby("symbol").cumcount() >= window - 1
    known = np.isfinite(frame[target_names].to_numpy(np.float64)).all(axis=1)
    return pd.DatetimeIndex(np.unique(frame.loc[full_window & known, "date"]))


# --------------------------------------------------------------------------- fitting


@dataclass
class FittedSet:
    """Everything fitted on one history: scaler, ensemble (and its members), baselines, bands.

    Attributes:
        spec: the scaler of the final models (fitted on the history they learned from).
        ensemble: the ensemble; its members are the learned models (and the baselines when
            configured).
        baselines: naive and drift, fitted on the same rows.
        intervals: a conformal band per model and baseline, from the calibration slice.
        samples: the whole frame scaled with ``spec``.
        iterations: what early stopping chose per model (LSTM optimiser steps, trees per
            horizon).
        fit_seconds: per model, selection and refit together.
        in_sample: the selection-stage forecasts on the validation slice and their outcomes:
            IN-SAMPLE (that slice stopped the training and weighed the ensemble).
        score_map: universe mode: per model, ``{"center": [H], "beta": [H]}`` turning its
            score into a forecast return (see the module docstring); None otherwise.
    """

    spec: FeatureSpec
    ensemble: EnsembleModel
    baselines: dict[str, Model]
    intervals: dict[str, dict[str, Any]]
    samples: Samples
    iterations: dict[str, Any]
    fit_seconds: dict[str, float]
    in_sample: tuple[Forecasts, np.ndarray] | None = None
    score_map: dict[str, dict[str, list[float]]] | None = None

    @property
    def models(self) -> dict[str, Model | EnsembleModel]:
        """The models a bundle exports: the learned members and the ensemble."""
        learned: dict[str, Model | EnsembleModel] = {
            n: m for n, m in self.ensemble.members.items() if n not in BASELINES
        }
        learned[ENSEMBLE] = self.ensemble
        return learned

    def outputs(self, samples: Samples) -> dict[str, np.ndarray]:
        """Native outputs of the learned models and the ensemble: forecast log returns, or in
        universe mode ranking scores."""
        members = self.ensemble.member_predictions(samples.x(self.ensemble))
        out = {n: p for n, p in members.items() if n not in BASELINES}
        out[ENSEMBLE] = self.ensemble.combine(members)
        return out

    @property
    def drift(self) -> np.ndarray:
        """The drift baseline's forecast per horizon (what a universe score adds to)."""
        return np.asarray(self.baselines["drift"].predict(np.zeros((1, 1)))[0], np.float64)

    def forecasts(
        self, samples: Samples, outputs: dict[str, np.ndarray] | None = None
    ) -> Forecasts:
        """Forecasts of every model, the ensemble and the baselines, with their bands
        (``outputs``: this set's ``outputs(samples)`` when already computed)."""
        outputs = self.outputs(samples) if outputs is None else outputs
        scores: dict[str, np.ndarray] = {}
        predictions = dict(outputs)
        if self.score_map is not None:
            scores = dict(outputs)
            predictions = {
                n: score_to_return(s, self.drift, self.score_map[n]) for n, s in outputs.items()
            }
        for name, baseline in self.baselines.items():
            predictions[name] = baseline.predict(samples.tabular)
        lower, upper = {}, {}
        for name, band in self.intervals.items():
            scale = interval_scale(band, samples.scale_raw)
            lower[name], upper[name] = evaluation.band_bounds(predictions[name], scale, band)
        return Forecasts(samples.symbols, samples.dates, predictions, lower, upper, scores)


def _calibrate(fitted: FittedSet, cal: Samples, config: ModelConfig) -> dict[str, dict[str, Any]]:
    """A conformal band per model from the calibration slice's forecasts."""
    names = list(config.intervals.scale_features)
    raw_scale = interval_scale({"scale_features": names}, cal.scale_raw)
    # a floor: a flat window (zero volatility) must not collapse a band to a point
    min_scale = float(np.quantile(raw_scale, 0.01)) if names else 0.0
    scale = np.maximum(raw_scale, min_scale)
    forecasts = fitted.forecasts(cal)
    return {
        name: {
            **evaluation.conformal_band(cal.y, pred, scale, config.intervals.level),
            "scale_features": names,
            "min_scale": min_scale,
        }
        for name, pred in forecasts.predictions.items()
    }


def fit_candidates(
    data: Dataset,
    config: ModelConfig,
    split: evaluation.Split,
    on_fit: Callable[[str], None] | None = None,
) -> FittedSet:
    """Fit, select, calibrate and (with ``evaluation.refit``) refit on one history.

    ``on_fit(model name)`` is called after each model is fitted (progress).

    Args:
        data: the feature frame.
        config: models, intervals and evaluation settings.
        split: the history's slices (``fit``, ``val``, ``cal``, ``history``); its ``test``
            block is not touched here.

    Raises:
        ModelError: too few labelled rows in a slice, or an interval scale feature that is
            not a feature column.
    """
    frame = clean_frame(data.frame, data.feature_names, data.target_names)
    scale_features = list(config.intervals.scale_features)
    unknown = [f for f in scale_features if f not in data.feature_names]
    if unknown:
        raise ModelError(f"interval scale features {unknown} are not feature columns")
    # fit the scaler on the training window only: later rows would leak the future
    labels = with_labels(frame, data, config)
    spec = FeatureSpec.fit(
        frame[frame["date"] <= split.fit[-1]],
        data.feature_names,
        window=config.window,
        horizon=data.horizon,
        feature_config=data.feature_config,
    )
    samples = make_samples(frame, spec, data.target_names, scale_features, labels)
    fit, val, cal = (samples.within(s) for s in (split.fit, split.val, split.cal))
    if min(len(fit), len(val), len(cal)) < 2:
        raise ModelError(
            f"too few labelled rows to fit ({len(fit)}), validate ({len(val)}) "
            f"and calibrate ({len(cal)})"
        )
    ensemble = build_ensemble(config)
    ensemble.fit(
        fit.x(ensemble),
        fit.label,
        val.x(ensemble),
        val.label,
        on_fit=on_fit,
        val_groups=val.dates if config.universe_mode else None,
    )
    baselines: dict[str, Model] = {
        b.name: b.fit(fit.tabular, fit.y, val.tabular, val.y) for b in (NaiveModel(), DriftModel())
    }
    iterations = {
        name: getattr(m, "steps_", None) or getattr(m, "iterations_", None)
        for name, m in ensemble.members.items()
        if name not in BASELINES
    }
    selected = FittedSet(
        spec, ensemble, baselines, {}, samples, iterations, dict(ensemble.fit_seconds_)
    )
    val_outputs = selected.outputs(val)
    if config.universe_mode:
        selected.score_map = ranking.fit_score_map(val_outputs, val.y, val.dates)
    selected.intervals = _calibrate(selected, cal, config)
    selected.in_sample = (selected.forecasts(val, val_outputs), val.y)
    if not config.evaluation.refit:
        return selected
    # learn from every labelled session of the history, the newest included
    spec = FeatureSpec.fit(
        frame[frame["date"] <= split.history[-1]],
        data.feature_names,
        window=config.window,
        horizon=data.horizon,
        feature_config=data.feature_config,
    )
    samples = make_samples(frame, spec, data.target_names, scale_features, labels)
    history = samples.within(split.history)
    refitted = ensemble.refit(history.x(ensemble), history.label)
    seconds = {n: selected.fit_seconds.get(n, 0.0) + s for n, s in refitted.fit_seconds_.items()}
    return FittedSet(
        spec,
        refitted,
        {n: b.refit(history.tabular, history.y) for n, b in baselines.items()},
        selected.intervals,
        samples,
        iterations,
        seconds,
        selected.in_sample,
        selected.score_map,
    )


# --------------------------------------------------------------------------- evaluation


class _Steps:
    """Counts finished steps of one task and reports them to a progress callback."""

    def __init__(self, task: str, total: int, progress: ProgressFn | None) -> None:
        self.task, self.total, self.done, self.progress = task, total, 0, progress
        if progress is not None:
            progress(task, 0, total)

    def advance(self, _what: str = "") -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.task, self.done, self.total)


@dataclass
class WalkForward:
    """Out-of-sample forecasts of every fold, stacked, and their metrics.

    ``universe`` (universe mode): the cross-sectional figures of every model's scores and of
    the single factors on the same test rows (``stockml.ranking.universe_report``).
    """

    folds: list[dict[str, Any]]
    metrics: dict[str, Any]
    forecasts: Forecasts
    y: np.ndarray
    importance: dict[str, dict[str, float]]
    last: FittedSet
    last_test: Samples
    universe: dict[str, Any] | None = None

    def report(self) -> dict[str, Any]:
        """The evaluation JSON: folds and per-model metrics (pooled and per symbol), and the
        cross-sectional figures of a universe."""
        out: dict[str, Any] = {"folds": self.folds, "models": self.metrics}
        if self.universe is not None:
            out["universe"] = self.universe
        return evaluation.json_safe(out)

    def equity_curve(self, cost_bps: float, execution_lag: int) -> dict[str, Any] | None:
        """The daily equity (from 1) of the long/flat backtest of the ensemble's (else the first
        model's) 1-session forecasts, equal weight across symbols, beside buy-and-hold: the
        same curves as the ``backtest`` block of the metrics, for charts."""
        names = list(self.forecasts.predictions)
        if not names:
            return None
        model = "ensemble" if "ensemble" in names else names[0]
        curves = evaluation.equity_curves(
            self.forecasts.predictions[model][:, 0],
            self.y[:, 0],
            self.forecasts.symbols,
            self.forecasts.dates,
            cost_bps,
            execution_lag,
        )
        return {
            "model": model,
            "dates": [d.date().isoformat() for d in pd.to_datetime(curves.index)],
            "strategy": [round(float(v), 6) for v in curves["strategy"]],
            "buy_and_hold": [round(float(v), 6) for v in curves["buy_and_hold"]],
        }


def factor_scores(
    samples: Samples, feature_names: list[str], factors: dict[str, str]
) -> dict[str, np.ndarray]:
    """The single factors' scores ``{name: [n]}`` of ``samples``' rows.

    A factor is a feature column, ``-column`` reversed. Its scaled value is used: the scaler
    is increasing in each feature, so the per-date ranks (all a factor is scored on) are the
    raw feature's. A factor whose column is not a feature is left out (logged).
    """
    out = {}
    for name, column in factors.items():
        sign = -1.0 if column.startswith("-") else 1.0
        feature = column.lstrip("+-")
        if feature not in feature_names:
            logger.warning("factor %s: %s is not a feature column; left out", name, feature)
            continue
        out[name] = sign * samples.tabular[:, feature_names.index(feature)].astype(np.float64)
    return out


def history_split(data: Dataset, config: ModelConfig) -> evaluation.Split:
    """The slices of all labelled history: what the published model is fitted on."""
    frame = clean_frame(data.frame, data.feature_names, data.target_names)
    days = labelled_days(frame, data.target_names, config.window)
    ev = config.evaluation
    fit, val, cal = evaluation.split_history(
        days, ev.val_fraction, ev.calibration_fraction, purge=data.horizon
    )
    return evaluation.Split(-1, fit, val, cal, days, days[:0])


def walk_forward(
    data: Dataset, config: ModelConfig, progress: ProgressFn | None = None
) -> WalkForward:
    """Expanding-window walk-forward over all symbols, with a purge of H sessions.

    ``progress("walk-forward", models fitted, folds x models)`` follows the fits; the log
    gets one line per fold.

    Raises:
        ModelError: too little data for the folds.
    """
    ev = config.evaluation
    frame = clean_frame(data.frame, data.feature_names, data.target_names)
    days = labelled_days(frame, data.target_names, config.window)
    splits = evaluation.walk_forward_splits(
        days, ev.n_folds, ev.test_fraction, ev.val_fraction, ev.calibration_fraction, data.horizon
    )
    parts: list[Forecasts] = []
    ys: list[np.ndarray] = []
    factors: list[dict[str, np.ndarray]] = []
    folds: list[dict[str, Any]] = []
    importance: dict[str, dict[str, float]] = {}
    steps = _Steps("walk-forward", len(splits) * len(config.models), progress)
    for split in splits:
        fitted = fit_candidates(data, config, split, steps.advance)
        test = fitted.samples.within(split.test)
        fold = fitted.forecasts(test)
        parts.append(fold)
        ys.append(test.y)
        ranked: dict[str, float] = {}
        if config.universe_mode:
            factors.append(factor_scores(test, data.feature_names, config.universe.factors))
            sections = ranking.CrossSections.of(test.dates, test.symbols)
            ranked = {
                name: ranking.mean_rank_ic(s[:, 0], test.y[:, 0], sections)
                for name, s in fold.scores.items()
            }
        folds.append(
            {
                "fold": split.fold,
                "fit": [split.fit[0], split.fit[-1]],
                "val": [split.val[0], split.val[-1]],
                "cal": [split.cal[0], split.cal[-1]],
                "test": [split.test[0], split.test[-1]],
                "n_test": len(test),
                "n_sessions": len(np.unique(test.dates)),
                "weights": fitted.ensemble.weights(),
                "iterations": fitted.iterations,
                "fit_seconds": fitted.fit_seconds,
                "models": evaluation.fold_metrics(fold, test.y),
                **({"rank_ic": ranked} if ranked else {}),
            }
        )
        for name, model in fitted.models.items():
            if hasattr(model, "feature_importance"):
                for feature, gain in model.feature_importance(data.feature_names).items():
                    importance.setdefault(name, {}).setdefault(feature, 0.0)
                    importance[name][feature] += gain
        logger.info(
            "fold %d: test %s..%s, %d rows%s",
            split.fold,
            split.test[0].date(),
            split.test[-1].date(),
            len(test),
            f", {ENSEMBLE} rank IC {ranked[ENSEMBLE]:.4f}" if ENSEMBLE in ranked else "",
        )
    forecasts, y = Forecasts.concat(parts), np.concatenate(ys)
    # a universe is judged on its cross-sections, pooled: no per-symbol tests of each model
    metrics = evaluation.score_forecasts(
        forecasts, y, ev.cost_bps, ev.execution_lag, per_symbol=not config.universe_mode
    )
    universe = None
    if config.universe_mode:
        u = config.universe
        stacked = {k: np.concatenate([f[k] for f in factors]) for k in factors[0]}
        universe = {
            "target": u.target,
            **ranking.universe_report(
                forecasts.symbols,
                forecasts.dates,
                forecasts.scores,
                stacked,
                y,
                quantile=u.quantile,
                k=u.top_k,
                lags=u.execution_lags,
                execution_lag=ev.execution_lag,
                cost_bps=ev.cost_bps,
                min_names=u.min_names,
            ),
        }
    return WalkForward(folds, metrics, forecasts, y, importance, fitted, test, universe)


def ranking_headline(report: dict[str, Any], model: str) -> dict[str, Any]:
    """``rank_ic``, ``rank_ic_t``, ``long_short_sharpe_net`` and ``turnover`` of ``model``
    (horizon 1, the configured execution lag) from a universe report; {} without one."""
    universe = report.get("universe")
    if not universe or model not in universe["models"]:
        return {}
    block = universe["models"][model]
    keys = ("rank_ic", "rank_ic_t", "icir", "long_short_sharpe_net", "turnover")
    best = universe.get("best_factor")
    return {
        **{k: block.get(k) for k in keys},
        "best_factor": best,
        "best_factor_rank_ic": None if best is None else universe["factors"][best]["rank_ic"],
    }


# --------------------------------------------------------------------------- export


def onnx_parity(
    model: Model | EnsembleModel, data: bytes, x: np.ndarray | WindowedRows
) -> dict[str, Any]:
    """ONNX Runtime vs the native model on ``x`` (a batch) and on its first row alone."""
    x = np.asarray(x)
    native = model.predict(x)
    batch = run_onnx(data, x)
    single = run_onnx(data, x[:1])
    diff = np.abs(batch.astype(np.float64) - native)
    return {
        "n": len(x),
        "max_abs": float(diff.max()),
        "p999_abs": float(np.quantile(diff, 0.999)),
        "batch1_max_abs": float(np.abs(single.astype(np.float64) - native[:1]).max()),
        "batch_shape": list(batch.shape),
    }


def export_models(
    fitted: FittedSet, rows: Samples
) -> tuple[dict[str, bytes], dict[str, dict[str, Any]]]:
    """Every model of ``fitted`` as ONNX, and its parity with the native model on ``rows``."""
    onnx: dict[str, bytes] = {}
    for name, model in fitted.models.items():
        if isinstance(model, EnsembleModel):
            onnx[name] = model.to_onnx(onnx)
        else:
            onnx[name] = model.to_onnx()
    parity = {name: onnx_parity(m, onnx[name], rows.x(m)) for name, m in fitted.models.items()}
    return onnx, parity


def parity_rows(samples: Samples) -> Samples:
    """The newest ``PARITY_ROWS`` rows per symbol: inputs like the ones serving will see."""
    order = np.argsort(samples.dates, kind="stable")
    return samples.take(np.sort(order[-PARITY_ROWS:]))


# --------------------------------------------------------------------------- training


HEADLINE_KEYS = (
    "n",
    "n_sessions",
    "rmse",
    "mae",
    "rmse_ratio_vs_naive",
    "best_baseline",
    "rmse_ratio_vs_best_baseline",
    "mape",
    "directional_accuracy",
    "directional_accuracy_always_long",
    "directional_pvalue",
    "ic",
    "dm_stat",
    "dm_pvalue",
    "dm_pvalue_vs_best_baseline",
    "interval_coverage",
    "interval_width",
)


def headline_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Flat horizon-1 numbers per model: ``{"pooled": {model: {...}}, "per_symbol": {symbol: {model: {...}}}}``."""

    def flat(m: dict[str, Any]) -> dict[str, Any]:
        out = {k: m.get(k) for k in HEADLINE_KEYS}
        backtest = m["backtest"]
        out["sharpe"] = backtest["strategy"]["sharpe"]
        out["annual_return"] = backtest["strategy"]["annual_return"]
        out["max_drawdown"] = backtest["strategy"]["max_drawdown"]
        out["buy_and_hold_sharpe"] = backtest["buy_and_hold"]["sharpe"]
        out["buy_and_hold_annual_return"] = backtest["buy_and_hold"]["annual_return"]
        return out

    pooled = {name: flat(block["pooled"]) for name, block in metrics.items()}
    per_symbol: dict[str, dict[str, Any]] = {}
    for name, block in metrics.items():
        for symbol, m in block["per_symbol"].items():
            per_symbol.setdefault(symbol, {})[name] = flat(m)
    return evaluation.json_safe({"pooled": pooled, "per_symbol": per_symbol})


@dataclass
class TrainResult:
    """A trained candidate: its bundle folder, evaluation, parity and the gate's verdict."""

    version: str
    bundle_dir: Path
    manifest: Manifest
    fitted: FittedSet
    onnx: dict[str, bytes]
    walk_forward: WalkForward
    in_sample_validation: dict[str, Any]
    parity: dict[str, dict[str, Any]]
    gate: GateResult
    data_window: dict[str, Any]
    git_commit: str


def git_commit() -> str:
    """The source tree's commit (``unknown`` outside a git checkout, e.g. in a container)."""
    try:
        out = subprocess.run(  # noqa: S603 - fixed argv
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def new_version() -> str:
    """A sortable, unique bundle version: UTC time + a random suffix."""
    return pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def write_predictions(path: Path, forecasts: Forecasts, models: list[str]) -> None:
    """Out-of-sample forecasts of ``models`` as Parquet: ``symbol, date, model, pred_1..H``."""
    frames = []
    for name in models:
        pred = forecasts.predictions[name]
        frame = pd.DataFrame(pred, columns=[f"pred_{h}" for h in range(1, pred.shape[1] + 1)])
        frame.insert(0, "model", name)
        frame.insert(0, "date", pd.to_datetime(forecasts.dates))
        frame.insert(0, "symbol", forecasts.symbols.astype(str))
        frames.append(frame)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(frames, ignore_index=True).to_parquet(path, index=False)


def train(
    data: Dataset,
    config: ModelConfig,
    workdir: Path,
    version: str | None = None,
    champion: Champion | None = None,
    progress: ProgressFn | None = None,
    drift_window: int = DRIFT_WINDOW,
) -> TrainResult:
    """Walk-forward evaluation, the final fit, ONNX export, parity, the gate and the bundle.

    Args:
        data: the feature frame and its column names.
        config: models and evaluation settings.
        workdir: the bundle is written to ``workdir/<version>/``, its out-of-sample forecasts
            to ``workdir/_evaluation/<version>/predictions.parquet``.
        version: the bundle version (default: ``new_version()``).
        champion: the serving champion's out-of-sample forecasts (``stockml.orchestration``),
            for the gate's paired comparison on the same rows; None when there is none.
        progress: called as ``progress(task, done, total)`` (walk-forward, final fit).
        drift_window: sessions per window of the bundle's feature distribution (the
            monitor's drift window).
    """
    version = version or new_version()
    wf = walk_forward(data, config, progress)
    split = history_split(data, config)
    final = _Steps("final fit", len(config.models), progress)
    fitted = fit_candidates(data, config, split, final.advance)
    onnx_models, parity = export_models(fitted, parity_rows(fitted.samples))
    assert fitted.in_sample is not None
    in_sample = evaluation.json_safe(
        evaluation.score_forecasts(
            *fitted.in_sample,
            config.evaluation.cost_bps,
            config.evaluation.execution_lag,
            per_symbol=not config.universe_mode,
        )
    )
    comparison = (
        None
        if champion is None
        else compare_with_champion(wf.forecasts, wf.y, champion, config.promotion)
    )
    report = wf.report()
    gate = assess(report, parity, comparison, config.promotion)
    logger.info("gate for %s: %s", version, gate.summary)
    commit = git_commit()
    frame = clean_frame(data.frame, data.feature_names, data.target_names)
    data_window = {
        "start": frame["date"].min().date().isoformat(),
        "end": frame["date"].max().date().isoformat(),
        # the last session the published model learned or was calibrated from: forward tests
        # start after it
        "train_end": split.history[-1].date().isoformat(),
        "calibration": [split.cal[0].date().isoformat(), split.cal[-1].date().isoformat()],
        "rows": len(frame),
    }
    gated = config.promotion.model
    ranked: dict[str, Any] = {}
    universe_extra: dict[str, Any] = {}
    if config.universe_mode and fitted.score_map is not None:
        ev, u = config.evaluation, config.universe
        ranked = {
            "model": gated,
            **ranking_headline(report, gated),
            "execution_lag": ev.execution_lag,
            "cost_bps": ev.cost_bps,
            # the walk-forward long-short equity of the gated model's scores, net of costs
            "long_short": ranking.long_short_equity(
                wf.forecasts.symbols,
                wf.forecasts.dates,
                wf.forecasts.scores[gated][:, 0],
                wf.y[:, 0],
                quantile=u.quantile,
                lag=ev.execution_lag,
                cost_bps=ev.cost_bps,
                min_names=u.min_names,
            ),
        }
        universe_extra = {
            "target": u.target,
            # the model whose scores order GET /rankings
            "model": gated,
            "drift": [float(v) for v in fitted.drift],
            "score_map": {name: fitted.score_map[name] for name in fitted.models},
        }
    metrics = {
        # headline numbers in the shape the API reads: {"pooled": {model: {...}}, "per_symbol": ...}
        **headline_metrics(wf.metrics),
        **({"ranking": evaluation.json_safe(ranked)} if ranked else {}),
        "walk_forward": report,
        # the slice that stopped the training and weighed the ensemble: NOT out of sample
        "in_sample_validation": in_sample,
        "parity": parity,
        "gate": gate.to_dict(),
        "data_window": data_window,
        "equity_curve": wf.equity_curve(
            config.evaluation.cost_bps, config.evaluation.execution_lag
        ),
    }
    exported = fitted.models
    # the training distribution of every feature the models see vary (the monitor's drift
    # reference), on the rows the published models learned from
    learned = frame[frame["date"] <= split.history[-1]]
    active = [n for n in fitted.spec.feature_names if n not in fitted.spec.inactive]
    distribution = FeatureDistribution.fit(
        learned[active].to_numpy(np.float64),
        learned["date"].to_numpy(),
        active,
        window=drift_window,
    )
    manifest = write_bundle(
        workdir / version,
        version=version,
        git_commit=commit,
        feature_spec=fitted.spec,
        metrics=metrics,
        onnx_models={name: (onnx_models[name], model_entry(m)) for name, m in exported.items()},
        intervals={name: fitted.intervals[name] for name in exported},
        symbols=data.symbols,
        extra={
            "window": config.window,
            "data_window": data_window,
            "model_config": config.model_dump(mode="json"),
            "ensemble_weights": fitted.ensemble.weights(),
            "iterations": fitted.iterations,
            # the baselines' forecasts, for forward tests of this bundle beside them
            "baselines": {
                name: [float(v) for v in b.predict(fitted.samples.tabular[:1])[0]]
                for name, b in fitted.baselines.items()
            },
            "baseline_intervals": {name: fitted.intervals[name] for name in fitted.baselines},
            # a global model over a universe: any symbol with features, and a ranking
            **({"universe": universe_extra} if universe_extra else {}),
        },
        # serving dates its forecasts from these, so the API never builds exchange-calendars
        # at start-up: from a year before the stalest symbol's last day to about a year ahead
        sessions=SessionTable.build(
            frame.groupby("symbol")["date"].max().min() - pd.Timedelta(days=366)
        ),
        distribution=distribution,
    )
    write_predictions(
        workdir / EVALUATION_DIR / version / PREDICTIONS, wf.forecasts, list(exported)
    )
    return TrainResult(
        version,
        workdir / version,
        manifest,
        fitted,
        onnx_models,
        wf,
        in_sample,
        parity,
        gate,
        data_window,
        commit,
    )


def evaluate(
    data: Dataset,
    config: ModelConfig,
    champion: Champion | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Walk-forward evaluation and the gate, nothing published: the ``evaluate --json`` report.

    ONNX parity is checked on the last fold's models (exported here, not kept) and its test
    rows, so the gate's parity check has evidence without the final fit.
    """
    wf = walk_forward(data, config, progress)
    _onnx, parity = export_models(wf.last, wf.last_test)
    comparison = (
        None
        if champion is None
        else compare_with_champion(wf.forecasts, wf.y, champion, config.promotion)
    )
    report = wf.report()
    report["parity"] = evaluation.json_safe(parity)
    report["gate"] = assess(report, parity, comparison, config.promotion).to_dict()
    return {**evaluation.json_safe(ranking_headline(report, config.promotion.model)), **report}
