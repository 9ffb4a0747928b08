"""When to retrain and how: the decision from live figures and drift, at most one trigger a day.

The reasons (each logged and published with its figure and threshold), on the monitored
version (the one the API serves) and its gated model (``model_config.yaml`` ``promotion``):

- **error**: its live RMSE at horizon 1, pooled over the symbols, above ``max_rmse_ratio``
  times the better of naive's and drift's on the same rows;
- **coverage**: its 90% band's live coverage at horizon 1 outside
  ``[min_coverage, max_coverage]``;
- **drift**: the features drift (:func:`stockml.monitoring.health.drift_report`).

The first two count once ``min_sessions`` sessions are scored (fewer say nothing either way).

The trigger starts the training job (on AWS the Batch job of ``infra/training-batch.yaml``,
locally ``stockml.orchestration.run_training``), which evaluates walk-forward and applies the
promotion gate: a retrained model becomes the champion only if the gate passes, as for any
training. One trigger per run date, whatever runs at once or again: the run claims
``<monitoring_prefix>/retrain/<date>.json`` with a conditional PUT (``If-None-Match``) before
it starts anything, and a re-run finds the claim and starts nothing. A claim whose trigger
failed is withdrawn and the error raised (the Lambda fails, is retried and alarms); one left
by a run that died is taken over (``If-Match`` on its ETag) after ``STALE_CLAIM_S``. No
trigger within ``cooldown_days`` of the last one, so a drift the gate keeps refusing to chase
does not start a training job every day.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import date
from typing import Any

from stockml.errors import StoreError
from stockml.monitoring.results import dumps, retrain_key, retrain_prefix

logger = logging.getLogger(__name__)

# a claim older than this whose run never recorded its trigger is taken over
STALE_CLAIM_S = 900.0

Trigger = Callable[[list[str], list[str]], dict[str, Any]]


def decide(
    live: dict[str, Any] | None, drift: dict[str, Any] | None, settings: Any
) -> dict[str, Any]:
    """The retraining decision.

    Args:
        live: the gated model's pooled metrics at horizon 1 in the live window (``n_sessions``,
            ``rmse_ratio_vs_best_baseline``, ``best_baseline``, ``interval_coverage``), or None.
        drift: :func:`~stockml.monitoring.health.drift_report`'s result, or None.
        settings: ``monitoring.retrain`` (RetrainSettings).

    Returns:
        ``{"retrain": bool, "reasons": [...], "checks": [{"name", "value", "threshold",
        "state": "ok" | "retrain" | "not enough data", "rule"}]}``.
    """
    checks = []
    sessions = (live or {}).get("n_sessions") or 0
    enough = sessions >= settings.min_sessions
    ratio = (live or {}).get("rmse_ratio_vs_best_baseline")
    checks.append(
        {
            "name": "error",
            "value": ratio,
            "threshold": settings.max_rmse_ratio,
            "sessions": sessions,
            "state": "not enough data"
            if not enough or ratio is None
            else ("retrain" if ratio > settings.max_rmse_ratio else "ok"),
            "rule": f"live RMSE (horizon 1) / the better of naive and drift's "
            f"({(live or {}).get('best_baseline')}) <= {settings.max_rmse_ratio} "
            f"over >= {settings.min_sessions} sessions",
        }
    )
    coverage = (live or {}).get("interval_coverage")
    checks.append(
        {
            "name": "coverage",
            "value": coverage,
            "threshold": [settings.min_coverage, settings.max_coverage],
            "sessions": sessions,
            "state": "not enough data"
            if not enough or coverage is None
            else (
                "retrain"
                if not settings.min_coverage <= coverage <= settings.max_coverage
                else "ok"
            ),
            "rule": f"live interval coverage (horizon 1) within "
            f"[{settings.min_coverage}, {settings.max_coverage}]",
        }
    )
    drifted = (drift or {}).get("drift")
    checks.append(
        {
            "name": "drift",
            "value": (drift or {}).get("drifted_share"),
            "threshold": (drift or {}).get("max_drifted_share"),
            "sessions": ((drift or {}).get("window") or {}).get("sessions"),
            "state": "not enough data"
            if drifted is None
            else ("retrain" if drifted and settings.on_drift else "ok"),
            "rule": "share of features whose PSI passes its threshold < "
            f"{(drift or {}).get('max_drifted_share')}"
            + ("" if settings.on_drift else " (reported only: on_drift is off)"),
        }
    )
    reasons = [
        f"{c['name']}: {_fmt(c['value'])} vs {_fmt(c['threshold'])} ({c['rule']})"
        for c in checks
        if c["state"] == "retrain"
    ]
    return {"retrain": bool(reasons) and settings.enabled, "reasons": reasons, "checks": checks}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def trigger_once(
    store: Any,
    prefix: str,
    run_date: date,
    reasons: list[str],
    symbols: list[str],
    trigger: Trigger,
    cooldown_days: int,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Start ``trigger`` at most once for ``run_date`` (see the module docstring).

    Returns:
        The day's trigger record: ``{"run_date", "reasons", "symbols", "state": "triggered",
        "result"}`` (also when an earlier run of the day triggered), or ``{"state":
        "cooldown", "last_trigger"}``.

    Raises:
        Exception: whatever the trigger raised (its claim is withdrawn first).
    """
    key = retrain_key(prefix, run_date)
    etag = None
    try:
        body, etag = store.get_object(key)
        record = json.loads(body)
        stale = (
            record.get("state") == "claimed"
            and clock() - record.get("claimed_at", 0) > STALE_CLAIM_S
        )
        if not stale:
            logger.info("retraining already triggered for %s: %s", run_date, record.get("state"))
            return dict(record)
        logger.warning("taking over the claim of %s: its run never recorded a trigger", key)
    except StoreError:
        pass  # no claim today
    last = _last_trigger(store, prefix, run_date)
    if etag is None and last is not None and (run_date - last).days < cooldown_days:
        logger.info(
            "retraining not triggered: last trigger on %s (cooldown %d days)", last, cooldown_days
        )
        return {
            "state": "cooldown",
            "last_trigger": last.isoformat(),
            "cooldown_days": cooldown_days,
        }
    claim = {
        "run_date": run_date.isoformat(),
        "reasons": reasons,
        "symbols": symbols,
        "state": "claimed",
        "claimed_at": clock(),
    }
    if store.put_bytes_if(key, dumps(claim), etag) is None:
        body, _etag = store.get_object(key)  # another run claimed it first
        return dict(json.loads(body))
    logger.warning("retraining %s: %s", ", ".join(symbols), "; ".join(reasons))
    try:
        result = trigger(symbols, reasons)
    except Exception:
        store.delete_keys([key])  # withdraw the claim: a retry may trigger
        raise
    record = {k: v for k, v in claim.items() if k != "claimed_at"}
    record.update(state="triggered", result=result)
    store.put_bytes(key, dumps(record))
    return record


def _last_trigger(store: Any, prefix: str, before: date) -> date | None:
    """The newest run date before ``before`` with a trigger record."""
    days = []
    for key in store.list_keys(retrain_prefix(prefix)):
        name = key.rsplit("/", 1)[-1].removesuffix(".json")
        try:
            day = date.fromisoformat(name)
        except ValueError:
            continue
        if day < before:
            days.append(day)
    return max(days) if days else None


def batch_trigger(job_queue: str, job_definition: str, client: Any = None) -> Trigger:
    """Submit the training job of ``infra/training-batch.yaml`` to AWS Batch (its
    ``--symbols`` overridden by the monitored bundle's)."""

    def submit(symbols: list[str], reasons: list[str]) -> dict[str, Any]:
        batch = client
        if batch is None:
            import boto3

            batch = boto3.client("batch")
        answer = batch.submit_job(
            jobName=f"stockml-retrain-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}",
            jobQueue=job_queue,
            jobDefinition=job_definition,
            containerOverrides={"command": ["--symbols", ",".join(symbols)]},
        )
        return {"kind": "aws-batch", "job_id": answer["jobId"], "job_name": answer["jobName"]}

    return submit


def local_trigger(settings: Any, mlflow: bool = True) -> Trigger:
    """Run the training job in this process (``stockml.orchestration.run_training``), logged
    to MLflow (``mlflow.tracking_uri``, else a local server started for it) unless ``mlflow``
    is False."""

    def run(symbols: list[str], reasons: list[str]) -> dict[str, Any]:
        from stockml.orchestration import run_training

        if mlflow:
            from stockml.tracking import tracking_server

            with tracking_server(settings.mlflow.tracking_uri) as uri:
                summary = run_training(settings, symbols, tracking_uri=uri)
        else:
            summary = run_training(settings, symbols)
        return {
            "kind": "local",
            "version": summary["version"],
            "promoted": summary["promoted"],
            "gate": summary["gate"],
        }

    return run
