"""Features Lambda: recompute the new days' features from raw bars into the features/ table.

Event shapes (examples in ``events/features_*.json``):
- EventBridge ``Scheduled Event`` (after ingestion): every symbol with raw bars.
- anything else: a manual run, ``{"symbols": [...]}`` (optional).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from stockml.features import FeatureConfig
from stockml.features.pipeline import update_features
from stockml.settings import Settings
from stockml.storage import Store

logger = Logger()
# once per container (Lambda's init phase); every invocation reuses them
settings = Settings()
store = Store.from_settings(settings.store)
config = FeatureConfig.from_yaml()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    symbols = None if event.get("detail-type") == "Scheduled Event" else event.get("symbols")
    report = update_features(store, symbols, config)
    logger.info("features updated", extra={"report": report.to_dict()})
    # the other symbols are written; a failed one fails the invocation: retries, alarms
    report.raise_for_errors()
    return report.to_dict()
