"""MLflow: one run per training, every model logged as ONNX (and natively where MLflow has
a flavour for it), the bundle as artifacts, and a registry version per run with aliases.

Registry: each run's bundle becomes a new version of the registered model and takes the
``challenger`` alias; it takes ``champion`` only when the promotion gate passed
(``stockml.gate``). The verdict is the run and version tag ``stockml.promotion`` (``promoted``
or ``refused: <failed checks>``), and every check is a tag ``stockml.gate.<check>`` holding
its value, threshold and verdict.

Metric names: ``wf_<model>_<metric>`` are walk-forward (out of sample);
``insample_val_<model>_<metric>`` come from the validation slice that stopped the training
and weighed the ensemble, so they are in-sample and say so.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from stockml.model_config import ModelConfig
    from stockml.train import TrainResult

logger = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"
PROMOTION_TAG = "stockml.promotion"
GATE_TAG_PREFIX = "stockml.gate."
HEADLINE = (
    "rmse",
    "mae",
    "rmse_ratio_vs_naive",
    "rmse_ratio_vs_best_baseline",
    "mape",
    "directional_accuracy",
    "directional_accuracy_always_long",
    "directional_pvalue",
    "ic",
    "dm_pvalue",
    "dm_pvalue_vs_best_baseline",
    "interval_coverage",
    "interval_width",
)


@dataclass(frozen=True)
class TrackingRecord:
    """Where a training landed in MLflow."""

    run_id: str
    experiment_id: str
    model_name: str
    model_version: str
    aliases: list[str]
    promotion: str


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[prefix] = value if not isinstance(value, list) else ",".join(map(str, value))
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def _tag_value(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _log_metrics(result: TrainResult) -> None:
    import mlflow

    metrics: dict[str, float] = {}
    for scope, block in (
        ("wf", result.walk_forward.report()["models"]),
        ("insample_val", result.in_sample_validation),
    ):
        for model, scores in block.items():
            pooled = scores["pooled"]
            for key in HEADLINE:
                if _finite(pooled.get(key)):
                    metrics[f"{scope}_{model}_{key}"] = float(pooled[key])
            sharpe = pooled["backtest"]["strategy"]["sharpe"]
            if _finite(sharpe):
                metrics[f"{scope}_{model}_sharpe"] = float(sharpe)
    for model, parity in result.parity.items():
        metrics[f"parity_{model}_max_abs"] = parity["max_abs"]
        metrics[f"parity_{model}_p999_abs"] = parity["p999_abs"]
    for model, seconds in result.fitted.fit_seconds.items():
        metrics[f"fit_seconds_{model}"] = seconds
    for check in result.gate.checks:
        if _finite(check.value):
            metrics[f"gate_{check.name}"] = float(check.value)
    mlflow.log_metrics(metrics)
    # per-fold metrics as steps: one curve per model across folds (horizon 1)
    for fold in result.walk_forward.report()["folds"]:
        values = {}
        for m, scores in fold["models"].items():
            for key, name in (
                ("rmse_ratio_vs_naive", "fold_rmse_ratio"),
                ("rmse_ratio_vs_best_baseline", "fold_rmse_ratio_best_baseline"),
                ("interval_coverage", "fold_interval_coverage"),
            ):
                if key in scores and _finite(scores[key][0]):
                    values[f"{name}_{m}"] = float(scores[key][0])
        mlflow.log_metrics(values, step=int(fold["fold"]))


def _log_plots(result: TrainResult, cost_bps: float, execution_lag: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    from stockml.evaluation import equity_curves

    wf = result.walk_forward
    fc = wf.forecasts
    order = np.argsort(fc.dates, kind="stable")
    dates = fc.dates[order]
    fig, ax = plt.subplots(figsize=(10, 4))
    if "ensemble" in fc.lower:
        ax.fill_between(
            dates,
            fc.lower["ensemble"][order, 0],
            fc.upper["ensemble"][order, 0],
            alpha=0.2,
            step="mid",
            label="ensemble band",
        )
    ax.plot(dates, wf.y[order, 0], ".", ms=2, label="actual", alpha=0.5)
    ax.plot(dates, fc.predictions["ensemble"][order, 0], ".", ms=2, label="ensemble")
    ax.set_title("Walk-forward 1-session log return: predicted vs actual")
    ax.legend()
    mlflow.log_figure(fig, "plots/predictions_vs_actual.png")
    plt.close(fig)

    for model, gains in wf.importance.items():
        ranked = sorted(gains.items(), key=lambda kv: kv[1])[-20:]
        fig, ax = plt.subplots(figsize=(6, 0.3 * len(ranked) + 1))
        ax.barh([k for k, _ in ranked], [v for _, v in ranked])
        ax.set_title(f"{model} feature importance (total gain)")
        fig.tight_layout()
        mlflow.log_figure(fig, f"plots/feature_importance_{model}.png")
        plt.close(fig)

    curves = equity_curves(
        fc.predictions["ensemble"][:, 0], wf.y[:, 0], fc.symbols, fc.dates, cost_bps, execution_lag
    )
    fig, ax = plt.subplots(figsize=(10, 4))
    curves.plot(ax=ax)
    ax.set_title(
        f"Walk-forward long/flat equity ({cost_bps:g} bps, lag {execution_lag}) vs buy-and-hold"
    )
    mlflow.log_figure(fig, "plots/backtest_equity.png")
    plt.close(fig)


def _log_models(result: TrainResult) -> None:
    import mlflow
    import onnx
    from mlflow.models import infer_signature

    from stockml.models import LightGBMModel, LSTMModel, XGBoostModel
    from stockml.train import parity_rows

    rows = parity_rows(result.fitted.samples)
    for name, model in result.fitted.models.items():
        example = np.ascontiguousarray(rows.x(model)[:2], np.float32)
        output = model.predict(example).astype(np.float32)
        signature = infer_signature(example, output)
        # explicit requirements: inferring them imports the model in a subprocess (slow)
        if isinstance(model, LSTMModel):
            import torch

            with warnings.catch_warnings():
                # MLflow saves torch models with torch.export ("pt2", no pickle); tracing
                # nn.LSTM warns about its flat weights, which it handles correctly
                warnings.filterwarnings(
                    "ignore", message="The tensor attributes", category=UserWarning
                )
                mlflow.pytorch.log_model(
                    model.net_,
                    name=name,
                    signature=signature,
                    input_example=example,
                    pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
                )
        elif isinstance(model, XGBoostModel | LightGBMModel):
            flavour = mlflow.xgboost if isinstance(model, XGBoostModel) else mlflow.lightgbm
            library = __import__(name)
            for h, booster in enumerate(model.boosters_, start=1):
                flavour.log_model(
                    booster,
                    name=f"{name}_h{h}",
                    input_example=example,
                    pip_requirements=[f"{name}=={library.__version__}"],
                )
        mlflow.onnx.log_model(
            onnx.load_from_string(result.onnx[name]),
            name=f"{name}_onnx",
            signature=signature,
            input_example=example,
            pip_requirements=["onnxruntime"],
        )


def check_tracking(tracking_uri: str) -> None:
    """Fail now, with a clear error, unless the MLflow server at ``tracking_uri`` answers.

    The training job calls it before it trains, not to find out after hours of training that
    the run cannot be logged. MLflow's client retries a failed request
    (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, default 7, with backoff) and waits
    ``MLFLOW_HTTP_REQUEST_TIMEOUT`` seconds (default 120) for each answer.

    Raises:
        TrackingError: the server could not be reached or refused the request.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from stockml.errors import TrackingError

    try:
        MlflowClient(tracking_uri).search_experiments(max_results=1)
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {tracking_uri} does not answer: {exc}") from exc


def log_training(
    result: TrainResult,
    config: ModelConfig,
    tracking_uri: str,
    experiment: str,
    registered_model: str,
    config_files: list[Path] | None = None,
    log_models: bool = True,
) -> TrackingRecord:
    """Log one training to MLflow, register its bundle and set the aliases.

    Args:
        result: the trained candidate (``stockml.train.train``).
        config: its model configuration (logged flat as params).
        tracking_uri: the MLflow server, e.g. ``http://127.0.0.1:5000``.
        experiment: experiment name (created when missing).
        registered_model: registry name; the new version becomes ``challenger``, and
            ``champion`` when ``result.gate`` promotes it.
        config_files: YAML files to attach (``configs/*.yaml``).
        log_models: also log every model in its native flavour and as ONNX.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    gate_tags = {
        f"{GATE_TAG_PREFIX}{c.name}": (
            f"{'passed' if c.passed else 'FAILED'}: value {_tag_value(c.value)}, "
            f"threshold {_tag_value(c.threshold)} ({c.rule})"
        )[:5000]
        for c in result.gate.checks
    }
    mlflow.set_tracking_uri(tracking_uri)
    experiment_id = mlflow.set_experiment(experiment).experiment_id
    wf = result.walk_forward
    params = _flatten("", config.model_dump(mode="json"), {})
    params.update(
        {
            "horizon": result.fitted.spec.horizon,
            "n_features": len(result.fitted.spec.feature_names),
            "symbols": ",".join(result.manifest.symbols)[:500],
            "bundle_version": result.version,
        }
    )
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{result.version}") as run:
        mlflow.log_params(params)
        mlflow.set_tags(
            {
                "git_commit": result.git_commit,
                "bundle_version": result.version,
                "data_start": result.data_window["start"],
                "data_end": result.data_window["end"],
                "data_rows": str(result.data_window["rows"]),
                "train_end": result.data_window["train_end"],
                PROMOTION_TAG: result.gate.summary,
                **gate_tags,
            }
        )
        for path in config_files or []:
            if path.is_file():
                mlflow.log_artifact(str(path), artifact_path="configs")
        mlflow.log_dict(result.fitted.spec.feature_config, "configs/feature_config.json")
        _log_metrics(result)
        mlflow.log_dict(wf.report(), "evaluation/walk_forward.json")
        mlflow.log_dict(result.gate.to_dict(), "evaluation/gate.json")
        _log_plots(result, config.evaluation.cost_bps, config.evaluation.execution_lag)
        if log_models:
            _log_models(result)
        mlflow.log_artifacts(str(result.bundle_dir), artifact_path="bundle")
        run_id, artifact_uri = run.info.run_id, run.info.artifact_uri

    client = MlflowClient(tracking_uri)
    try:
        client.create_registered_model(
            registered_model, description="stockml serving bundles (ONNX + FeatureSpec)"
        )
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
            raise
    version = client.create_model_version(
        registered_model,
        source=f"{artifact_uri}/bundle",
        run_id=run_id,
        tags={"bundle_version": result.version, PROMOTION_TAG: result.gate.summary, **gate_tags},
    )
    client.set_registered_model_alias(registered_model, CHALLENGER, version.version)
    aliases = [CHALLENGER]
    if result.gate.passed:
        client.set_registered_model_alias(registered_model, CHAMPION, version.version)
        aliases.append(CHAMPION)
    logger.info(
        "mlflow run %s -> %s v%s %s (%s)",
        run_id,
        registered_model,
        version.version,
        aliases,
        result.gate.summary,
    )
    return TrackingRecord(
        run_id, experiment_id, registered_model, str(version.version), aliases, result.gate.summary
    )


def default_tracking_root() -> Path:
    """Where the CLI's local MLflow server keeps its SQLite file and artifacts."""
    return Path(".stockml") / "mlflow"


def scratch_dir() -> Path:
    """A fresh temporary folder for bundles of one CLI run."""
    return Path(tempfile.mkdtemp(prefix="stockml-train-"))


@contextmanager
def tracking_server(tracking_uri: str | None, root: Path | None = None) -> Iterator[str]:
    """Yield an MLflow tracking URI: ``tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else a
    local server (SQLite under ``root``, default ``.stockml/mlflow``) started for the block."""
    from stockml.local import start_mlflow_server

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        yield uri
        return
    server = start_mlflow_server(root or default_tracking_root())
    try:
        yield server.url
    finally:
        server.stop()
