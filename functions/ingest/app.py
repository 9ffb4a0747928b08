"""Ingest Lambda: the schedule plans batches, SQS messages ingest them, a manual call ingests now.

Event shapes (examples in ``events/ingest_*.json``):
- EventBridge ``Scheduled Event``: the planner; sends the universe to the queue in batches.
- SQS batch (``Records``): each message body ``{"symbols": [...]}`` is one batch, processed
  once per message id even when SQS delivers it again (``stockml.idempotency``).
- anything else: a manual run, ``{"symbols": [...], "start": "YYYY-MM-DD"}`` (both optional).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from stockml.ingest import enqueue_universe, ingest_sqs_records, ingest_symbols
from stockml.settings import Settings

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = Settings()
    if "Records" in event:
        # the lease of each message's idempotency marker: until this invocation is stopped
        lease_s = context.get_remaining_time_in_millis() / 1000
        return ingest_sqs_records(event["Records"], settings, lease_s=lease_s)
    if event.get("detail-type") == "Scheduled Event":
        return enqueue_universe(settings)
    report = ingest_symbols(settings, symbols=event.get("symbols"), start=event.get("start"))
    logger.info("ingest finished", extra={"totals": report.totals()})
    # fail loudly: Lambda marks the invocation failed, so retries and alarms fire
    report.raise_for_errors()
    return report.to_dict()
