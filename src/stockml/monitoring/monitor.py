"""One monitor run: compact the prediction log, score it, check the data, decide on retraining.

``run_monitor`` (``stockml monitor``; the monitor Lambda, scheduled after ingestion and the
features job):

1. compacts the API's prediction log into Parquet (:mod:`.predictions`);
2. scores every served model version's forecasts against the prices realised since
   (:mod:`.live`: the forward test's scoring);
3. checks the data: feature drift of the monitored bundle, each symbol's freshness, the
   quarantined share (:mod:`.health`);
4. decides whether to retrain and, if so, triggers the training job once for the day
   (:mod:`.retrain`; the promotion gate then decides as always);
5. publishes the results under ``<monitoring_prefix>/`` (:mod:`.results`).

The **monitored version** is the one the API serves (``api.model_version``: the champion, or
a version named there). Everything is computed as of the **run date** (default: the last
NYSE session completed now; a replay names a past one): forecasts made up to it, bars and
features up to it. Re-running on the same day changes nothing: the compaction has nothing
left to do, the published objects are rewritten only when their content differs (it is a
function of the store's data and the run date: no clock time in it), and the day's
retraining claim already exists.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

import pandas as pd

from stockml.bundle import (
    DISTRIBUTION,
    FeatureDistribution,
    Manifest,
    read_champion_version,
    sha256_bytes,
)
from stockml.errors import BundleError, StoreError
from stockml.monitoring import health, live, predictions, retrain
from stockml.monitoring.results import dumps, live_key, run_key, status_key

logger = logging.getLogger(__name__)

# the headline figures of each model and horizon that /monitoring and /metrics publish
HEADLINE = (
    "n",
    "n_sessions",
    "rmse",
    "rmse_naive",
    "rmse_ratio_vs_naive",
    "rmse_ratio_vs_drift",
    "best_baseline",
    "rmse_ratio_vs_best_baseline",
    "dm_pvalue_vs_best_baseline",
    "directional_accuracy",
    "directional_accuracy_always_long",
    "directional_pvalue",
    "interval_coverage",
    "interval_width",
    "rank_ic",
    "rank_ic_sessions",
)


def read_bundle_meta(
    store: Any, models_prefix: str, version: str
) -> tuple[Manifest, FeatureDistribution | None]:
    """A bundle's manifest and feature distribution (sha256-checked), without its models.

    Raises:
        BundleError: the manifest is missing or unreadable, or the distribution is corrupt.
    """
    base = f"{models_prefix.strip('/')}/{version}"
    try:
        manifest = Manifest.from_json(store.get_bytes(f"{base}/manifest.json").decode())
    except StoreError as exc:
        raise BundleError(f"bundle {version} has no readable manifest: {exc}") from exc
    except (ValueError, TypeError, KeyError) as exc:
        raise BundleError(f"bundle {version}'s manifest is unreadable: {exc}") from exc
    if DISTRIBUTION not in manifest.files:
        return manifest, None
    data = store.get_bytes(f"{base}/{DISTRIBUTION}")
    if sha256_bytes(data) != manifest.files[DISTRIBUTION]:
        raise BundleError(f"bundle {version}: {DISTRIBUTION} does not match its sha256")
    return manifest, FeatureDistribution.from_json(data.decode())


def monitored_version(store: Any, settings: Any) -> str | None:
    """The version the API serves: ``api.model_version``, following the champion pointer."""
    if settings.api.model_version != "champion":
        return str(settings.api.model_version)
    try:
        return read_champion_version(store, settings.store.models_prefix)
    except BundleError as exc:
        logger.warning("no monitored version: %s", exc)
        return None


def _headlines(block: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{horizon: {headline figure: value}}`` of one score block."""
    return {
        h: {k: metrics.get(k) for k in HEADLINE if k in metrics}
        for h, metrics in block["by_horizon"].items()
    }


def _publish(store: Any, key: str, obj: Any) -> bool:
    """Write ``obj`` to ``key`` unless it holds exactly these bytes already."""
    data = dumps(obj)
    try:
        if store.get_bytes(key) == data:
            return False
    except StoreError:
        pass  # not there yet
    store.put_bytes(key, data)
    return True


def run_monitor(
    store: Any,
    settings: Any,
    model_config: Any,
    run_date: date | None = None,
    trigger: retrain.Trigger | None = None,
    now: pd.Timestamp | None = None,
) -> dict[str, Any]:
    """One monitor run (see the module docstring).

    Args:
        store: the bucket (:class:`~stockml.storage.Store`).
        settings: the process settings (``store`` prefixes, ``api.model_version``,
            ``monitoring``).
        model_config: ``promotion.model`` (the gated model the retraining checks watch) and
            ``evaluation`` (the backtest's cost and lag).
        run_date: the session the run is as of (default: the last completed at ``now``).
        trigger: starts the training job; None decides and reports without triggering.
        now: the wall clock (default: now).

    Returns:
        ``{"run_date", "status" (what /monitoring serves), "live" (every version's full
        scores), "compaction", "written" (keys whose content changed)}``.
    """
    config = settings.monitoring
    prefixes = settings.store
    expected = health.expected_session(now, run_date)
    run_date = run_date or expected
    compaction = predictions.compact(store, prefixes.predictions_prefix)

    version = monitored_version(store, settings)
    manifest = distribution = None
    if version is not None:
        try:
            manifest, distribution = read_bundle_meta(store, prefixes.models_prefix, version)
        except BundleError as exc:
            logger.warning("monitored version %s unreadable: %s", version, exc)

    # --- live metrics of every version served in the lookback
    lookback = (
        config.live.history_sessions + config.live.series_sessions + config.live.window_sessions
    )
    log = predictions.read_log(
        store,
        prefixes.predictions_prefix,
        start=run_date - timedelta(days=int(lookback * 1.5) + 15),
        end=run_date,
    )
    served = predictions.served_forecasts(log)
    infos: dict[str, live.VersionInfo] = {}
    for v in sorted(served["model_version"].unique()) if len(served) else []:
        try:
            meta = (
                manifest
                if v == version and manifest is not None
                else read_bundle_meta(store, prefixes.models_prefix, v)[0]
            )
        except BundleError as exc:
            logger.warning("served version %s is not scored: %s", v, exc)
            continue
        infos[v] = live.VersionInfo.from_manifest(meta)
    scores: dict[str, Any] = {}
    if infos:
        horizon = max(i.horizon for i in infos.values())
        symbols = sorted(served["symbol"].unique())
        bars = store.read_bars(symbols, start=served["as_of"].min(), end=run_date)
        outcomes = live.realised_outcomes(bars, horizon)
        for v, info in infos.items():
            scores[v] = live.score_version(
                served,
                outcomes,
                info,
                config.live.window_sessions,
                config.live.series_sessions,
                config.live.history_sessions,
                config.live.min_rank_ic_symbols,
                model_config.evaluation.cost_bps,
                model_config.evaluation.execution_lag,
            )

    # --- the data's health
    drift = None
    if distribution is not None and manifest is not None:
        features = store.read_table(
            prefixes.features_prefix,
            list(manifest.symbols) or None,
            start=run_date - timedelta(days=int(distribution.window * 1.6) + 15),
            end=run_date,
        )
        if len(features):
            drift = health.drift_report(
                distribution,
                features,
                run_date,
                config.drift.psi_threshold,
                config.drift.null_quantile,
                config.drift.max_drifted_share,
            )
    freshness = health.freshness_report(
        store.last_dates(prefixes.raw_prefix), expected, config.freshness.max_age_sessions
    )
    quarantine = health.quarantine_report(
        store,
        prefixes.quarantine_prefix,
        prefixes.raw_prefix,
        expected,
        config.quarantine.window_sessions,
        config.quarantine.max_share,
    )

    # --- the retraining decision, on the monitored version's gated model
    gated = model_config.promotion.model
    monitored = scores.get(version or "")
    gated_live = None
    if monitored and monitored["models"] and gated in monitored["models"]:
        gated_live = monitored["models"][gated]["pooled"]
    decision = retrain.decide(gated_live, drift, config.retrain)
    for reason in decision["reasons"]:
        logger.warning("retraining reason for %s: %s", version, reason)
    trigger_record = None
    if decision["retrain"] and trigger is not None and manifest is not None:
        trigger_record = retrain.trigger_once(
            store,
            prefixes.monitoring_prefix,
            run_date,
            decision["reasons"],
            list(manifest.symbols),
            trigger,
            config.retrain.cooldown_days,
        )

    # --- publish
    status = {
        "run_date": run_date.isoformat(),
        "monitored_version": version,
        "gated_model": gated,
        "live": {
            v: {
                "window": s["window"],
                "served": s["served"],
                "pending": s["pending"],
                "models": {m: _headlines(b["pooled"]) for m, b in (s["models"] or {}).items()},
            }
            for v, s in scores.items()
        },
        "drift": drift,
        "freshness": freshness,
        "quarantine": quarantine,
        "retrain": {**decision, "trigger": trigger_record},
    }
    written = []
    per_symbol: dict[str, dict[str, Any]] = {}
    for v, s in scores.items():
        for model, block in (s["models"] or {}).items():
            for symbol, metrics in block["per_symbol"].items():
                entry = per_symbol.setdefault(symbol, {}).setdefault(
                    v, {"window": s["window"], "models": {}, "series": s["series"].get(symbol, {})}
                )
                entry["models"][model] = _headlines(metrics)
    for symbol, versions in sorted(per_symbol.items()):
        body = {"run_date": run_date.isoformat(), "symbol": symbol, "versions": versions}
        if _publish(store, live_key(prefixes.monitoring_prefix, symbol), body):
            written.append(live_key(prefixes.monitoring_prefix, symbol))
    report = {**status, "scores": {v: s["models"] for v, s in scores.items()}}
    if _publish(store, run_key(prefixes.monitoring_prefix, run_date), report):
        written.append(run_key(prefixes.monitoring_prefix, run_date))
    if _publish(store, status_key(prefixes.monitoring_prefix), status):
        written.append(status_key(prefixes.monitoring_prefix))
    return {
        "run_date": run_date.isoformat(),
        "status": status,
        "live": scores,
        "compaction": compaction,
        "written": written,
    }


def run_metrics(status: dict[str, Any]) -> list[tuple[str, float, str, dict[str, str]]]:
    """The run's figures as ``(name, value, unit, dimensions)``: what the monitor Lambda
    publishes as CloudWatch metrics (and alarms on). Horizon 1, the monitored version."""
    out: list[tuple[str, float, str, dict[str, str]]] = []
    version = status.get("monitored_version")
    live_block = (status.get("live") or {}).get(version or "") or {}
    names = {
        "rmse_ratio_vs_naive": "LiveRmseRatioVsNaive",
        "rmse_ratio_vs_drift": "LiveRmseRatioVsDrift",
        "rmse_ratio_vs_best_baseline": "LiveRmseRatioVsBestBaseline",
        "directional_accuracy": "LiveDirectionalAccuracy",
        "directional_accuracy_always_long": "LiveAlwaysLongAccuracy",
        "interval_coverage": "LiveIntervalCoverage",
        "rank_ic": "LiveRankIC",
        "n_sessions": "LiveScoredSessions",
    }
    for model, horizons in (live_block.get("models") or {}).items():
        figures = horizons.get("1") or {}
        for key, metric in names.items():
            value = figures.get(key)
            if isinstance(value, int | float):
                unit = "Count" if key == "n_sessions" else "None"
                out.append((metric, float(value), unit, {"model": model}))
    drift = status.get("drift") or {}
    if drift.get("drifted_share") is not None:
        out.append(("DriftedFeatureShare", float(drift["drifted_share"]), "None", {}))
        out.append(("MaxFeaturePsi", float(drift["max_psi"]), "None", {}))
    freshness = status.get("freshness") or {}
    out.append(("StaleSymbols", float(len(freshness.get("stale") or [])), "Count", {}))
    share = (status.get("quarantine") or {}).get("share")
    if share is not None:
        out.append(("QuarantinedShare", float(share), "None", {}))
    out.append(
        ("RetrainDecision", float(bool((status.get("retrain") or {}).get("retrain"))), "Count", {})
    )
    return out
