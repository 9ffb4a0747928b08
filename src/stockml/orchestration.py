"""Training jobs around the trainer: the store in, MLflow and the published bundle out.

- ``run_training``: store -> features -> ``train.train`` (walk-forward, final fit, ONNX, the
  gate, compared with the serving champion) -> MLflow -> the bundle in the store (and the
  champion pointer when the gate passed);
- ``run_evaluation``: the same walk-forward and gate, nothing published (``stockml evaluate``);
- ``run_forward_test``: a published bundle scored on sessions after its training end
  (``stockml evaluate --bundle``).

The trainer (``stockml.train``) knows nothing of the store or MLflow; this module is the glue.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stockml import evaluation
from stockml.bundle import (
    Bundle,
    predictions_key,
    publish_bundle,
    read_champion_version,
)
from stockml.errors import BundleError, StoreError, TrackingError
from stockml.evaluation import Forecasts
from stockml.gate import Champion
from stockml.model_config import ModelConfig
from stockml.progress import ProgressFn
from stockml.train import Dataset, evaluate, ranking_headline, train

logger = logging.getLogger(__name__)


def load_dataset(
    store: Any,
    symbols: list[str],
    feature_config: Any,
    history_sessions: int | None = None,
    progress: ProgressFn | None = None,
    universe: list[str] | None = None,
    skip_missing: bool = False,
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

    ``skip_missing`` (a universe, whose list may name symbols without bars, e.g. delisted
    before the stored history, or with too few for the features' warm-up, e.g. listed days
    before it ends): such symbols are left out with one log line instead of failing, as the
    feature pipeline skips them.

    Raises:
        FeatureError: a symbol has no bars in the store, or too few (unless
            ``skip_missing``), or none has enough.
    """
    from stockml.errors import FeatureError
    from stockml.features import build_features, feature_columns, target_columns

    bars = store.read_bars(symbols)
    found = set(bars["symbol"].astype(str)) if not bars.empty else set()
    missing = [s for s in symbols if s not in found]
    if missing and (not skip_missing or not found):
        raise FeatureError(f"no bars in the store for {missing}: run `stockml ingest` first")
    if missing:
        logger.warning(
            "%d symbol(s) have no bars in the store and are left out: %s",
            len(missing),
            ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""),
        )
        symbols = [s for s in symbols if s in found]
    if skip_missing:
        counts = bars.groupby("symbol").size()
        short = sorted(str(s) for s in counts[counts <= feature_config.warmup_rows()].index)
        if short and len(short) < len(counts):
            logger.warning(
                "%d symbol(s) have too few bars for the %d-row warm-up and are left out: %s",
                len(short),
                feature_config.warmup_rows(),
                ", ".join(short[:10]) + (" ..." if len(short) > 10 else ""),
            )
            bars = bars[~bars["symbol"].astype(str).isin(short)]
            symbols = [s for s in symbols if s not in short]
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


def _bundle_dataset(
    store: Any, bundle: Bundle, symbols: list[str], data: Dataset | None
) -> Dataset:
    """Features of ``symbols`` as the bundle's feature configuration computes them (``data``
    itself when it was computed with the same configuration). A global bundle's symbols
    without enough bars are left out, as in training (``load_dataset``'s ``skip_missing``)."""
    from stockml.features import FeatureConfig

    if data is not None and data.feature_config == bundle.feature_spec.feature_config:
        return data
    config = FeatureConfig.model_validate(bundle.feature_spec.feature_config)
    return load_dataset(store, symbols, config, skip_missing="universe" in bundle.manifest.extra)


def load_champion(store: Any, data: Dataset, config: ModelConfig) -> Champion | None:
    """The serving champion's out-of-sample forecasts of the gated model on ``data``'s symbols:
    its stored walk-forward forecasts, then its own forecasts (ONNX, no refit) for the sessions
    after its training end. None when there is no champion or it lacks the gated model."""
    from stockml.forward import bundle_forecasts, train_end
    from stockml.inference import load_bundle

    prefix = store.models_prefix
    try:
        version = read_champion_version(store, prefix)
        bundle = load_bundle(store, version, models_prefix=prefix)
    except BundleError as exc:
        logger.info("no champion to compare with: %s", exc)
        return None
    model = config.promotion.model
    if model not in bundle.manifest.models:
        logger.warning("champion %s has no %s model: not compared", version, model)
        return None
    parts: list[Forecasts] = []
    try:
        stored = pd.read_parquet(io.BytesIO(store.get_bytes(predictions_key(prefix, version))))
    except StoreError:
        stored = pd.DataFrame()
    if len(stored):
        stored = stored[(stored["model"] == model) & stored["symbol"].isin(data.symbols)]
    if len(stored):
        columns = [f"pred_{h}" for h in range(1, bundle.manifest.horizon + 1)]
        parts.append(
            Forecasts(
                stored["symbol"].to_numpy(str),
                stored["date"].to_numpy("datetime64[ns]"),
                {model: stored[columns].to_numpy(np.float64)},
            )
        )
    own = _bundle_dataset(store, bundle, data.symbols, data)
    later = bundle_forecasts(
        bundle, own.frame, start=train_end(bundle) + pd.Timedelta(days=1), models=[model]
    )
    if len(later):
        parts.append(Forecasts(later.symbols, later.dates, {model: later.predictions[model]}))
    if not parts:
        return None
    return Champion(version, Forecasts.concat(parts))


def _configs(config: ModelConfig | None) -> tuple[Any, ModelConfig]:
    from stockml.features import FeatureConfig

    return FeatureConfig.from_yaml(), config or ModelConfig.from_yaml()


def _job_inputs(
    settings: Any,
    symbols: list[str] | None,
    config: ModelConfig | None,
    progress: ProgressFn | None,
    universe: list[str] | None,
) -> tuple[Any, ModelConfig, Dataset, Champion | None]:
    """What training and evaluation start from: the store, the model configuration, the
    dataset of ``symbols`` (default: ``default_symbols``) and the serving champion's forecasts
    on its rows."""
    from stockml.storage import Store

    feature_config, config = _configs(config)
    store = Store.from_settings(settings.store)
    data = load_dataset(
        store,
        symbols or default_symbols(settings, feature_config),
        feature_config,
        config.history_sessions,
        progress,
        universe,
        skip_missing=config.universe_mode,
    )
    return store, config, data, load_champion(store, data, config)


def run_training(
    settings: Any,
    symbols: list[str] | None = None,
    config: ModelConfig | None = None,
    tracking_uri: str | None = None,
    workdir: Path | None = None,
    log_models: bool = True,
    progress: ProgressFn | None = None,
    universe: list[str] | None = None,
) -> dict[str, Any]:
    """The training job: store -> features -> train -> MLflow -> bundle in the store.

    MLflow first, the store last: when MLflow is unreachable the job fails before it trains,
    and when MLflow fails during the logging nothing is published (:class:`TrackingError`).

    Args:
        settings: the process's Settings (store, mlflow names).
        symbols: tickers to train on (default: ``default_symbols``).
        config: model configuration (default: ``configs/model_config.yaml``).
        tracking_uri: MLflow server; None skips MLflow (the bundle is still published and
            promoted by the same gate).
        workdir: local folder for the bundle (default: a temporary folder).
        log_models: log every model to MLflow in its native flavour and as ONNX.
        progress: called as ``progress(task, done, total)`` (features, walk-forward, final fit).
        universe: the cross-sectional peers (default: every symbol with raw bars).

    Returns:
        A summary: version, gate, aliases, keys written, headline metrics.

    Raises:
        TrackingError: MLflow did not answer before the training, or failed while logging it
            (then nothing was published).
    """
    from stockml.settings import find_config_dir
    from stockml.tracking import check_tracking, log_training, scratch_dir

    if tracking_uri:
        check_tracking(tracking_uri)  # an unreachable MLflow fails the job now, not after it
    store, config, data, champion = _job_inputs(settings, symbols, config, progress, universe)
    result = train(
        data,
        config,
        workdir or scratch_dir(),
        champion=champion,
        progress=progress,
        drift_window=settings.monitoring.drift.window_sessions,
    )
    record = None
    if tracking_uri:
        folder = find_config_dir()
        files = (
            [folder / n for n in ("config.yaml", "feature_config.yaml", "model_config.yaml")]
            if folder
            else []
        )
        from mlflow.exceptions import MlflowException

        try:
            record = log_training(
                result,
                config,
                tracking_uri,
                settings.mlflow.experiment,
                settings.mlflow.registered_model,
                config_files=files,
                log_models=log_models,
            )
        except MlflowException as exc:
            # the bundle goes to the store only once MLflow holds its run: nothing half-done
            raise TrackingError(
                f"MLflow at {tracking_uri} failed while logging bundle {result.version}: {exc}. "
                "Nothing was published: the bundle is not in the store and the champion is "
                "unchanged; train again once MLflow answers"
            ) from exc
    keys = publish_bundle(
        store, result.bundle_dir, result.version, result.gate.passed, result.gate.summary
    )
    gated = result.walk_forward.metrics[config.promotion.model]["pooled"]
    return evaluation.json_safe(
        {
            "version": result.version,
            "symbols": data.symbols,
            "promoted": result.gate.passed,
            "gate": result.gate.summary,
            "gate_checks": result.gate.to_dict()["checks"],
            "champion_compared": None if champion is None else champion.version,
            "mlflow": None
            if record is None
            else {
                "run_id": record.run_id,
                "model": record.model_name,
                "version": record.model_version,
                "aliases": record.aliases,
            },
            "bundle_keys": keys,
            "ensemble_weights": result.fitted.ensemble.weights(),
            "walk_forward_" + config.promotion.model: {
                k: gated.get(k)
                for k in (
                    "n",
                    "rmse_ratio_vs_naive",
                    "rmse_ratio_vs_best_baseline",
                    "dm_pvalue_vs_best_baseline",
                    "directional_accuracy",
                    "directional_accuracy_always_long",
                    "ic",
                    "interval_coverage",
                )
            },
            "parity_max_abs": {n: p["max_abs"] for n, p in result.parity.items()},
            "data_window": result.data_window,
            **(
                {"ranking": ranking_headline(result.walk_forward.report(), config.promotion.model)}
                if config.universe_mode
                else {}
            ),
        }
    )


def run_evaluation(
    settings: Any,
    symbols: list[str] | None = None,
    config: ModelConfig | None = None,
    progress: ProgressFn | None = None,
    universe: list[str] | None = None,
) -> dict[str, Any]:
    """Walk-forward evaluation and the gate (nothing exported): the JSON report of every model
    and baseline, the gate object, and the comparison with the serving champion if any."""
    _store, config, data, champion = _job_inputs(settings, symbols, config, progress, universe)
    report = evaluate(data, config, champion, progress)
    return {
        "symbols": data.symbols,
        "horizon": data.horizon,
        "cost_bps": config.evaluation.cost_bps,
        "execution_lag": config.evaluation.execution_lag,
        **report,
    }


def run_forward_test(
    settings: Any,
    bundle: str,
    start: str,
    end: str | None = None,
    symbols: list[str] | None = None,
    config: ModelConfig | None = None,
) -> dict[str, Any]:
    """``stockml evaluate --bundle``: a published bundle (``champion`` or a version) scored on
    the sessions from ``start`` to ``end`` of ``symbols`` (default: the bundle's), no refit.

    Raises:
        BundleError: no such bundle.
        ValidationError: ``start`` inside its training window, or nothing to score.
    """
    from stockml.forward import forward_test
    from stockml.inference import load_bundle
    from stockml.storage import Store

    _feature_config, config = _configs(config)
    store = Store.from_settings(settings.store)
    loaded = load_bundle(store, bundle, models_prefix=store.models_prefix)
    wanted = symbols or list(loaded.manifest.symbols)
    data = _bundle_dataset(store, loaded, wanted, None)
    return forward_test(
        loaded,
        data.frame,
        data.target_names,
        pd.Timestamp(start),
        None if end is None else pd.Timestamp(end),
        config.evaluation.cost_bps,
        config.evaluation.execution_lag,
        config.universe,
    )
