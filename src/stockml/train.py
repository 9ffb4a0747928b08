"""Training: walk-forward evaluation, the final fit, ONNX export, parity, the promotion gate
and the serving bundle.

The flow (``train``): walk-forward over all symbols (each fold fits its own ``FeatureSpec`` on
its training window, the models, the ensemble weights on its validation slice, and scores
the test block against the baselines); then the final fit on all history but the last
validation slice; ONNX export and parity of every model on that held-out slice; the gate;
the bundle. MLflow logging (``stockml.tracking``) and the upload to the store
(``publish_bundle``) come after and need no retraining.

Input is a feature frame in the feature library's contract (``symbol, date, close,
adj_close, <features>, target_1..target_H``). ``load_dataset`` reads it from the store's
``features/`` table: the same rows the API reads at serving time, so training and serving see
identical features.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from stockml import evaluation
from stockml.bundle import FeatureSpec, Manifest, write_bundle
from stockml.errors import FeatureError, ModelError
from stockml.models import (
    DriftModel,
    LightGBMModel,
    LSTMModel,
    Model,
    NaiveModel,
    XGBoostModel,
    model_entry,
)
from stockml.models.ensemble import combine, fit_weights
from stockml.models.onnx_utils import run_onnx
from stockml.models.sequences import WindowedRows
from stockml.progress import ProgressFn
from stockml.sessions import SessionTable
from stockml.settings import load_yaml_config

logger = logging.getLogger(__name__)

ENSEMBLE = "ensemble"
BASELINES = ("naive", "drift")


# --------------------------------------------------------------------------- configuration


class LSTMConfig(BaseModel):
    hidden_size: int = 32
    num_layers: int = 1
    dropout: float = 0.0
    learning_rate: float = 1e-3
    batch_size: int = 256
    max_epochs: int = 20
    patience: int = 3


class XGBoostConfig(BaseModel):
    n_estimators: int = 400
    max_depth: int = 4
    learning_rate: float = 0.03
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    early_stopping_rounds: int = 40


class LightGBMConfig(BaseModel):
    n_estimators: int = 400
    num_leaves: int = 15
    learning_rate: float = 0.03
    min_data_in_leaf: int = 40
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    early_stopping_rounds: int = 40
    device: str = "cpu"


class EvaluationConfig(BaseModel):
    n_folds: int = 3
    test_fraction: float = 0.3
    val_fraction: float = 0.15
    cost_bps: float = 5.0


class PromotionConfig(BaseModel):
    max_rmse_ratio: float = 1.0
    parity_tolerance: float = 1e-4


class ModelConfig(BaseModel):
    """``configs/model_config.yaml``: which models, their hyper-parameters, how to judge them."""

    seed: int = 42
    window: int = 60
    # sessions per symbol to learn from (the most recent); None = the whole history
    history_sessions: int | None = 2520
    device: str = "auto"
    n_threads: int | None = None
    models: list[str] = Field(default_factory=lambda: ["lstm", "xgboost", "lightgbm"])
    lstm: LSTMConfig = Field(default_factory=LSTMConfig)
    xgboost: XGBoostConfig = Field(default_factory=XGBoostConfig)
    lightgbm: LightGBMConfig = Field(default_factory=LightGBMConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    interval_level: float = 0.9
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)

    @classmethod
    def from_yaml(cls, **overrides: Any) -> ModelConfig:
        """``configs/model_config.yaml`` (defaults where absent), top-level keys overridden."""
        return cls.model_validate({**load_yaml_config("model_config.yaml"), **overrides})


def build_models(config: ModelConfig) -> list[Model]:
    """Fresh, unfitted models named in ``config.models``."""
    factories: dict[str, Callable[[], Model]] = {
        "lstm": lambda: LSTMModel(
            **config.lstm.model_dump(),
            seed=config.seed,
            device=config.device,
            n_threads=config.n_threads,
        ),
        "xgboost": lambda: XGBoostModel(
            **config.xgboost.model_dump(),
            seed=config.seed,
            n_jobs=config.n_threads,
            device=config.device,
        ),
        "lightgbm": lambda: LightGBMModel(
            **config.lightgbm.model_dump(), seed=config.seed, n_jobs=config.n_threads
        ),
    }
    unknown = [m for m in config.models if m not in factories]
    if unknown or not config.models:
        raise ModelError(
            f"unknown or no models {unknown or config.models}; choose from {sorted(factories)}"
        )
    return [factories[name]() for name in config.models]


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
        )

    def x(self, model: Model) -> np.ndarray | WindowedRows:
        return self.sequence if model.kind == "sequence" else self.tabular

    def within(self, days: pd.DatetimeIndex, labelled: bool = True) -> Samples:
        """Rows dated in ``days`` (with every target known when ``labelled``)."""
        mask = np.isin(self.dates, days.values)
        if labelled:
            mask &= np.isfinite(self.y).all(axis=1)
        return self.take(mask)


def make_samples(frame: pd.DataFrame, spec: FeatureSpec, target_names: list[str]) -> Samples:
    """Scale ``frame`` with ``spec`` and cut it into aligned tabular rows and sequences.

    The tabular row of a session is the last row of its sequence, so every model sees the
    same information and all are scored on the same sessions. The sequences are windows of
    ONE scaled feature matrix by reference (:class:`WindowedRows`), not ``window`` copies of
    every row: a universe's sequences would not fit in memory.
    """
    window = spec.window
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
    symbols, dates, close, tabular, y = (np.concatenate(c) for c in zip(*parts, strict=True))
    sequence = WindowedRows.from_blocks(blocks, window)
    return Samples(symbols, dates, close, tabular, sequence, y)


def labelled_days(samples: Samples) -> pd.DatetimeIndex:
    """Sorted sessions with at least one fully labelled row."""
    ok = np.isfinite(samples.y).all(axis=1)
    return pd.DatetimeIndex(np.unique(samples.dates[ok]))


# --------------------------------------------------------------------------- fitting


@dataclass
class FittedSet:
    """Everything fitted on one training window: scaler, models, baselines, ensemble, bands."""

    spec: FeatureSpec
    models: dict[str, Model]
    baselines: dict[str, Model]
    weights: dict[str, float]
    intervals: dict[str, dict[str, Any]]
    val: Samples
    fit_seconds: dict[str, float]

    def predict(self, samples: Samples) -> dict[str, np.ndarray]:
        """Native predictions of every model, the ensemble and the baselines."""
        out = {name: m.predict(samples.x(m)) for name, m in self.models.items()}
        out[ENSEMBLE] = combine(out, self.weights)
        out.update({name: b.predict(samples.tabular) for name, b in self.baselines.items()})
        return out


def fit_candidates(
    data: Dataset,
    config: ModelConfig,
    fit_days: pd.DatetimeIndex,
    val_days: pd.DatetimeIndex,
    on_fit: Callable[[str], None] | None = None,
) -> tuple[FittedSet, Samples]:
    """Fit scaler, models, baselines, ensemble weights and intervals on one window.

    ``on_fit(model name)`` is called after each model is fitted (progress).
    Returns the fitted set and the samples of the whole frame scaled with its FeatureSpec.
    """
    frame = clean_frame(data.frame, data.feature_names, data.target_names)
    # fit the scaler on the training window only: later rows would leak the future
    spec = FeatureSpec.fit(
        frame[frame["date"] <= fit_days[-1]],
        data.feature_names,
        window=config.window,
        horizon=data.horizon,
        feature_config=data.feature_config,
    )
    samples = make_samples(frame, spec, data.target_names)
    fit, val = samples.within(fit_days), samples.within(val_days)
    if len(fit) < 2 or len(val) < 2:
        raise ModelError(f"too few labelled rows to fit ({len(fit)}) and validate ({len(val)})")
    models: dict[str, Model] = {}
    seconds: dict[str, float] = {}
    for model in build_models(config):
        started = time.perf_counter()
        models[model.name] = model.fit(fit.x(model), fit.y, val.x(model), val.y)
        seconds[model.name] = time.perf_counter() - started
        if on_fit is not None:
            on_fit(model.name)
    baselines: dict[str, Model] = {
        b.name: b.fit(fit.tabular, fit.y, val.tabular, val.y) for b in (NaiveModel(), DriftModel())
    }
    val_pred = {name: m.predict(val.x(m)) for name, m in models.items()}
    # ensemble weights and bands from validation only: test rows never shape the model
    weights = fit_weights(val_pred, val.y)
    val_pred[ENSEMBLE] = combine(val_pred, weights)
    intervals = {
        name: evaluation.conformal_intervals(val.y, pred, config.interval_level)
        for name, pred in val_pred.items()
    }
    fitted = FittedSet(spec, models, baselines, weights, intervals, val, seconds)
    return fitted, samples


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
    """Out-of-sample predictions of every fold, stacked, and their metrics."""

    folds: list[dict[str, Any]]
    metrics: dict[str, Any]
    predictions: dict[str, np.ndarray]
    y: np.ndarray
    symbols: np.ndarray
    dates: np.ndarray
    importance: dict[str, dict[str, float]]

    def report(self) -> dict[str, Any]:
        """The evaluation JSON: folds and per-model metrics (pooled and per symbol)."""
        return evaluation.json_safe({"folds": self.folds, "models": self.metrics})


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
    # label dates from the frame: sessions whose targets are known and that have a full window
    first_rows = frame.groupby("symbol").cumcount() >= config.window - 1
    known = np.isfinite(frame[data.target_names].to_numpy(np.float64)).all(axis=1)
    days = pd.DatetimeIndex(np.unique(frame.loc[first_rows & known, "date"]))
    splits = evaluation.walk_forward_splits(
        days, ev.n_folds, ev.test_fraction, ev.val_fraction, purge=data.horizon
    )
    preds: dict[str, list[np.ndarray]] = {}
    ys, syms, dates, folds = [], [], [], []
    importance: dict[str, dict[str, float]] = {}
    steps = _Steps("walk-forward", len(splits) * len(config.models), progress)
    for split in splits:
        fitted, samples = fit_candidates(data, config, split.fit, split.val, steps.advance)
        test = samples.within(split.test)
        fold_pred = fitted.predict(test)
        for name, pred in fold_pred.items():
            preds.setdefault(name, []).append(pred)
        ys.append(test.y)
        syms.append(test.symbols)
        dates.append(test.dates)
        naive_rmse = float(np.sqrt(np.mean(test.y[:, 0] ** 2)))
        folds.append(
            {
                "fold": split.fold,
                "fit": [split.fit[0], split.fit[-1]],
                "val": [split.val[0], split.val[-1]],
                "test": [split.test[0], split.test[-1]],
                "n_test": len(test),
                "weights": fitted.weights,
                "fit_seconds": fitted.fit_seconds,
                "rmse_ratio_vs_naive": {
                    name: float(np.sqrt(np.mean((p[:, 0] - test.y[:, 0]) ** 2))) / naive_rmse
                    for name, p in fold_pred.items()
                },
            }
        )
        for name, model in fitted.models.items():
            if hasattr(model, "feature_importance"):
                for feature, gain in model.feature_importance(data.feature_names).items():
                    importance.setdefault(name, {}).setdefault(feature, 0.0)
                    importance[name][feature] += gain
        logger.info(
            "fold %d: test %s..%s, %d rows",
            split.fold,
            split.test[0].date(),
            split.test[-1].date(),
            len(test),
        )
    stacked = {name: np.concatenate(p) for name, p in preds.items()}
    y, symbols, when = np.concatenate(ys), np.concatenate(syms), np.concatenate(dates)
    metrics = evaluation.evaluate_predictions(stacked, y, symbols, when, ev.cost_bps)
    return WalkForward(folds, metrics, stacked, y, symbols, when, importance)


# --------------------------------------------------------------------------- export and gate


def onnx_parity(model: Model, data: bytes, x: np.ndarray) -> dict[str, Any]:
    """ONNX Runtime vs the native model on ``x`` (a batch) and on its first row alone."""
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


HEADLINE_KEYS = (
    "n",
    "rmse",
    "mae",
    "rmse_ratio_vs_naive",
    "mape",
    "directional_accuracy",
    "directional_pvalue",
    "ic",
    "dm_stat",
    "dm_pvalue",
)


def headline_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Flat horizon-1 numbers per model: ``{"pooled": {model: {...}}, "per_symbol": {symbol: {model: {...}}}}``."""

    def flat(m: dict[str, Any]) -> dict[str, Any]:
        out = {k: m.get(k) for k in HEADLINE_KEYS}
        backtest = m["backtest"]
        out["sharpe"] = backtest["strategy"]["sharpe"]
        out["annual_return"] = backtest["strategy"]["annual_return"]
        out["max_drawdown"] = backtest["strategy"]["max_drawdown"]
        out["buy_and_hold_annual_return"] = backtest["buy_and_hold"]["annual_return"]
        return out

    pooled = {name: flat(block["pooled"]) for name, block in metrics.items()}
    per_symbol: dict[str, dict[str, Any]] = {}
    for name, block in metrics.items():
        for symbol, m in block["per_symbol"].items():
            per_symbol.setdefault(symbol, {})[name] = flat(m)
    return evaluation.json_safe({"pooled": pooled, "per_symbol": per_symbol})


@dataclass(frozen=True)
class GateDecision:
    """The promotion gate's verdict; ``reasons`` say why a model was refused."""

    promote: bool
    reasons: list[str]
    rmse_ratio: float | None

    @property
    def summary(self) -> str:
        return "promoted" if self.promote else "refused: " + "; ".join(self.reasons)


def promotion_gate(
    rmse_ratio: float | None, parity: dict[str, dict[str, Any]], config: PromotionConfig
) -> GateDecision:
    """Promote only when every ONNX model matches its native twin AND the ensemble beats naive.

    Args:
        rmse_ratio: the ensemble's out-of-sample RMSE / naive RMSE (walk-forward, horizon 1).
        parity: per-model ``onnx_parity`` results.
        config: the thresholds.
    """
    reasons = []
    for name, p in sorted(parity.items()):
        worst = max(p["max_abs"], p["batch1_max_abs"])
        if not worst <= config.parity_tolerance:
            reasons.append(f"{name} ONNX parity {worst:.2e} > {config.parity_tolerance:.0e}")
    if rmse_ratio is None or not rmse_ratio < config.max_rmse_ratio:
        shown = "n/a" if rmse_ratio is None else f"{rmse_ratio:.4f}"
        reasons.append(
            f"ensemble does not beat naive: rmse ratio {shown} >= {config.max_rmse_ratio}"
        )
    return GateDecision(promote=not reasons, reasons=reasons, rmse_ratio=rmse_ratio)


@dataclass
class TrainResult:
    """A trained candidate: its bundle folder, evaluation, parity and the gate's verdict."""

    version: str
    bundle_dir: Path
    manifest: Manifest
    fitted: FittedSet
    onnx: dict[str, bytes]
    walk_forward: WalkForward
    validation: dict[str, Any]
    parity: dict[str, dict[str, Any]]
    gate: GateDecision
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


def train(
    data: Dataset,
    config: ModelConfig,
    workdir: Path,
    version: str | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Walk-forward evaluation, final fit, ONNX export, parity, the gate and the bundle.

    Args:
        data: the feature frame and its column names.
        config: models and evaluation settings.
        workdir: the bundle is written to ``workdir/<version>/``.
        version: the bundle version (default: ``new_version()``).
        progress: called as ``progress(task, done, total)`` (walk-forward, final fit).
    """
    version = version or new_version()
    wf = walk_forward(data, config, progress)
    # final fit: all history; the last validation slice early-stops, weighs and checks parity
    frame = clean_frame(data.frame, data.feature_names, data.target_names)
    known = np.isfinite(frame[data.target_names].to_numpy(np.float64)).all(axis=1)
    days = pd.DatetimeIndex(np.unique(frame.loc[known, "date"]))
    fit_days, val_days = evaluation.split_fit_val(
        days, config.evaluation.val_fraction, purge=data.horizon
    )
    final = _Steps("final fit", len(config.models), progress)
    fitted, _samples = fit_candidates(data, config, fit_days, val_days, final.advance)
    val = fitted.val
    onnx_models = {name: m.to_onnx() for name, m in fitted.models.items()}
    parity = {
        name: onnx_parity(m, onnx_models[name], val.x(m)) for name, m in fitted.models.items()
    }
    validation = evaluation.json_safe(
        evaluation.evaluate_predictions(
            fitted.predict(val), val.y, val.symbols, val.dates, config.evaluation.cost_bps
        )
    )
    ratio = wf.metrics[ENSEMBLE]["pooled"].get("rmse_ratio_vs_naive")
    gate = promotion_gate(ratio, parity, config.promotion)
    logger.info("gate for %s: %s", version, gate.summary)
    commit = git_commit()
    data_window = {
        "start": frame["date"].min().date().isoformat(),
        "end": frame["date"].max().date().isoformat(),
        "fit_end": fit_days[-1].date().isoformat(),
        "val_start": val_days[0].date().isoformat(),
        "rows": len(frame),
    }
    metrics = {
        # headline numbers in the shape the API reads: {"pooled": {model: {...}}, "per_symbol": ...}
        **headline_metrics(wf.metrics),
        "walk_forward": wf.report(),
        "validation": validation,
        "parity": parity,
        "gate": {"promote": gate.promote, "reasons": gate.reasons, "rmse_ratio": gate.rmse_ratio},
        "data_window": data_window,
    }
    manifest = write_bundle(
        workdir / version,
        version=version,
        git_commit=commit,
        feature_spec=fitted.spec,
        metrics=metrics,
        onnx_models={
            name: (onnx_models[name], model_entry(m)) for name, m in fitted.models.items()
        },
        ensemble_weights=fitted.weights,
        intervals=fitted.intervals,
        symbols=data.symbols,
        extra={
            "window": config.window,
            "data_window": data_window,
            "model_config": config.model_dump(),
        },
        # serving dates its forecasts from these, so the API never builds exchange-calendars
        # at start-up: from a year before the stalest symbol's last day to about a year ahead
        sessions=SessionTable.build(
            frame.groupby("symbol")["date"].max().min() - pd.Timedelta(days=366)
        ),
    )
    return TrainResult(
        version,
        workdir / version,
        manifest,
        fitted,
        onnx_models,
        wf,
        validation,
        parity,
        gate,
        data_window,
        commit,
    )


def publish_bundle(store: Any, result: TrainResult, promote: bool) -> list[str]:
    """Upload the bundle to ``<models_prefix>/<version>/``; point ``champion.json`` at it if promoted.

    The pointer is written last: a reader following it always finds a complete bundle.
    """
    keys = store.put_folder(result.bundle_dir, f"{store.models_prefix}/{result.version}")
    if promote:
        pointer = {
            "version": result.version,
            "promoted_at": pd.Timestamp.now(tz="UTC").isoformat(),
            "rmse_ratio_vs_naive": result.gate.rmse_ratio,
        }
        store.put_bytes(f"{store.models_prefix}/champion.json", json.dumps(pointer).encode())
        keys.append(f"{store.models_prefix}/champion.json")
    return keys


# --------------------------------------------------------------------------- from the store


def load_dataset(
    store: Any,
    symbols: list[str],
    feature_config: Any,
    history_sessions: int | None = None,
    progress: ProgressFn | None = None,
    universe: list[str] | None = None,
) -> Dataset:
    """Features of ``symbols`` computed from the store's raw bars with ``build_features``.

    ``history_sessions`` keeps each symbol's most recent sessions only (after the features
    are computed on the whole history, so indicators are warmed up).

    Cross-sectional features rank each symbol against its peers: they are computed over the
    same universe the feature pipeline uses (``universe``, default every symbol with raw
    bars), whatever ``symbols`` are trained on, or training would see other values than the
    stored rows serving reads.

    Training recomputes features from raw bars (plus the market symbols and the news the
    feature config names) instead of reading ``features/``: ``stockml train`` then works right
    after ``stockml ingest``, and the same function the feature pipeline runs produces them,
    with the exact configuration stored in the bundle.

    Raises:
        FeatureError: a symbol has no bars in the store.
    """
    from stockml.features import build_features, feature_columns, target_columns

    bars = store.read_bars(symbols)
    found = set(bars["symbol"].astype(str)) if not bars.empty else set()
    missing = [s for s in symbols if s not in found]
    if missing:
        raise FeatureError(f"no bars in the store for {missing}: run `stockml ingest` first")
    if feature_config.cross_section.enabled:
        context = set(symbols) | set(feature_config.market.symbols)
        peers = [
            s for s in (universe or sorted(store.last_dates(store.raw_prefix))) if s not in context
        ]
        if peers:
            more = store.read_bars(peers)
            counts = more.groupby("symbol").size()
            # peers too short for the warm-up output no row, so they are no peers
            ready = counts[counts > feature_config.warmup_rows()].index
            bars = pd.concat([bars, more[more["symbol"].isin(ready)]], ignore_index=True)
    market = store.read_bars(list(feature_config.market.symbols))
    news = (
        store.read_table(store.news_prefix, symbols)
        if feature_config.news.enabled
        else pd.DataFrame()
    )
    frame = build_features(
        bars,
        None if market.empty else market,
        None if news.empty else news,
        feature_config,
        progress=progress,
    )
    frame = frame[frame["symbol"].isin(symbols)].reset_index(drop=True)
    if history_sessions is not None:
        frame = frame.groupby("symbol", sort=False, group_keys=False).tail(history_sessions)
        frame = frame.reset_index(drop=True)
    return Dataset(
        frame=frame,
        feature_names=feature_columns(feature_config),
        target_names=target_columns(feature_config),
        feature_config=feature_config.model_dump(mode="json"),
    )


def default_symbols(settings: Any, feature_config: Any) -> list[str]:
    """The configured ingest symbols that are not market context (``^GSPC`` etc.)."""
    market = set(feature_config.market.symbols)
    return [s for s in settings.ingest.symbols if s not in market] or list(settings.ingest.symbols)


def run_training(
    settings: Any,
    symbols: list[str] | None = None,
    config: ModelConfig | None = None,
    tracking_uri: str | None = None,
    workdir: Path | None = None,
    log_models: bool = True,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """The training job: store -> features -> train -> MLflow -> bundle in the store.

    Args:
        settings: the process's Settings (store, mlflow names).
        symbols: tickers to train on (default: ``default_symbols``).
        config: model configuration (default: ``configs/model_config.yaml``).
        tracking_uri: MLflow server; None skips MLflow (the bundle is still published and
            promoted by the same gate).
        workdir: local folder for the bundle (default: a temporary folder).
        log_models: log every model to MLflow in its native flavour and as ONNX.
        progress: called as ``progress(task, done, total)`` (features, walk-forward, final fit).

    Returns:
        A summary: version, gate, aliases, keys written, headline metrics.
    """
    from stockml.features import FeatureConfig
    from stockml.settings import find_config_dir
    from stockml.storage import Store
    from stockml.tracking import log_training, scratch_dir

    feature_config = FeatureConfig.from_yaml()
    config = config or ModelConfig.from_yaml()
    store = Store.from_settings(settings.store)
    symbols = symbols or default_symbols(settings, feature_config)
    data = load_dataset(store, symbols, feature_config, config.history_sessions, progress)
    result = train(data, config, workdir or scratch_dir(), progress=progress)
    record = None
    if tracking_uri:
        folder = find_config_dir()
        files = (
            [folder / n for n in ("config.yaml", "feature_config.yaml", "model_config.yaml")]
            if folder
            else []
        )
        record = log_training(
            result,
            config,
            tracking_uri,
            settings.mlflow.experiment,
            settings.mlflow.registered_model,
            config_files=files,
            log_models=log_models,
        )
    keys = publish_bundle(store, result, promote=result.gate.promote)
    ensemble = result.walk_forward.metrics[ENSEMBLE]["pooled"]
    return evaluation.json_safe(
        {
            "version": result.version,
            "symbols": data.symbols,
            "promoted": result.gate.promote,
            "gate": result.gate.summary,
            "mlflow": None
            if record is None
            else {
                "run_id": record.run_id,
                "model": record.model_name,
                "version": record.model_version,
                "aliases": record.aliases,
            },
            "bundle_keys": keys,
            "ensemble_weights": result.fitted.weights,
            "walk_forward_ensemble": {
                k: ensemble.get(k)
                for k in ("n", "rmse_ratio_vs_naive", "directional_accuracy", "ic")
            },
            "parity_max_abs": {n: p["max_abs"] for n, p in result.parity.items()},
            "data_window": result.data_window,
        }
    )


def run_evaluation(
    settings: Any,
    symbols: list[str] | None = None,
    config: ModelConfig | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Walk-forward evaluation only (nothing exported): the JSON report of every model and baseline."""
    from stockml.features import FeatureConfig
    from stockml.storage import Store

    feature_config = FeatureConfig.from_yaml()
    config = config or ModelConfig.from_yaml()
    store = Store.from_settings(settings.store)
    symbols = symbols or default_symbols(settings, feature_config)
    data = load_dataset(store, symbols, feature_config, config.history_sessions, progress)
    report = walk_forward(data, config, progress).report()
    report["symbols"] = data.symbols
    report["horizon"] = data.horizon
    report["cost_bps"] = config.evaluation.cost_bps
    return report
