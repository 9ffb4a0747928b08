"""Ingest Lambda: the schedule plans batches, SQS messages ingest them, a manual call ingests now.

Event shapes (examples in ``events/ingest_*.json``):
- EventBridge ``Scheduled Event``: the planner; sends the universe to the queue in batches.
- SQS batch (``Records``): each message body ``{"symbols": [...]}`` is one batch, processed
  once per message id even when SQS delivers it again (``stockml.idempotency``). Powertools'
  batch processor answers with the messages that failed (partial batch response): a message
  with a failed symbol, or one that another delivery is processing right now
  (``AlreadyRunningError``), goes back to the queue (retried, then the dead-letter queue); the
  others are deleted.
- anything else: a manual run, ``{"symbols": [...], "start": "YYYY-MM-DD"}`` (both optional).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from stockml.idempotency import Once
from stockml.ingest import enqueue_universe, ingest_sqs_message, ingest_symbols
from stockml.settings import Settings
from stockml.storage import Store

logger = Logger()
# once per container (Lambda's init phase); every invocation reuses them
settings = Settings()
store = Store.from_settings(settings.store)
# a batch whose every message failed is answered the same way (no exception): a delivery
# refused because another one holds the message is no error of this function. Failed messages
# are logged (with the exception) by the package's logger, as the package logs ingestion.
processor = BatchProcessor(
    event_type=EventType.SQS,
    raise_on_entire_batch_failure=False,
    logger=logging.getLogger("stockml.ingest"),
)


def ingest_message(record: SQSRecord, lambda_context: LambdaContext) -> Once:
    # the lease of the message's idempotency marker: until this invocation is stopped
    lease_s = lambda_context.get_remaining_time_in_millis() / 1000
    return ingest_sqs_message(record.raw_event, settings, store, lease_s=lease_s)


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, object]:
    if "Records" in event:
        return process_partial_response(
            event=event, record_handler=ingest_message, processor=processor, context=context
        )
    if event.get("detail-type") == "Scheduled Event":
        return enqueue_universe(settings)
    report = ingest_symbols(
        settings, symbols=event.get("symbols"), start=event.get("start"), store=store
    )
    logger.info("ingest finished", extra={"totals": report.totals()})
    # fail loudly: Lambda marks the invocation failed, so retries and alarms fire
    report.raise_for_errors()
    return report.to_dict()
