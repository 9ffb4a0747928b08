"""Monitor Lambda: score served forecasts, check drift, freshness and quarantine, retrain.

Event shapes (examples in ``events/monitor_*.json``):
- EventBridge ``Scheduled Event`` (after ingestion and the features job): as of the last
  completed NYSE session;
- anything else: a manual run, ``{"as_of": "YYYY-MM-DD"}`` (optional).

A retraining it decides submits the AWS Batch training job the template names
(``STOCKML_MONITORING__RETRAIN__BATCH_JOB_*``); without one it decides and reports only. The
run's figures go to CloudWatch as EMF metrics (Powertools Metrics), where the template's
alarms watch them.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from aws_lambda_powertools import Logger, Metrics, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from stockml.model_config import ModelConfig
from stockml.monitoring.monitor import run_metrics, run_monitor
from stockml.monitoring.retrain import batch_trigger
from stockml.settings import Settings
from stockml.storage import Store

logger = Logger()
metrics = Metrics()


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = Settings()
    manual = event.get("detail-type") != "Scheduled Event" and event.get("as_of")
    jobs = settings.monitoring.retrain
    trigger = None
    if jobs.batch_job_queue and jobs.batch_job_definition:
        trigger = batch_trigger(jobs.batch_job_queue, jobs.batch_job_definition)
    result = run_monitor(
        Store.from_settings(settings.store),
        settings,
        ModelConfig.from_yaml(),
        date.fromisoformat(manual) if manual else None,
        trigger,
    )
    for name, value, unit, dimensions in run_metrics(result["status"]):
        if dimensions:  # per model: a metric of its own dimension set
            with single_metric(name=name, unit=MetricUnit(unit), value=value) as metric:
                for key, dimension in dimensions.items():
                    metric.add_dimension(name=key, value=dimension)
        else:
            metrics.add_metric(name=name, unit=MetricUnit(unit), value=value)
    summary = {k: result[k] for k in ("run_date", "compaction", "written")}
    summary["retrain"] = result["status"]["retrain"]
    logger.info("monitor run", extra={"summary": summary})
    return summary
