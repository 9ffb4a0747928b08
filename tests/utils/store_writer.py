"""A store writer run as its own process by the concurrency tests (never imported by them).

    python tests/utils/store_writer.py '<json job>'

The job: ``endpoint``, ``bucket`` and ``steps``. Once everything is imported the writer prints
``ready`` and waits for a line on stdin, so that a test's writers really start together; then
it runs the steps in order, each one of:

- ``{"ingest": {"csv_path": DIR, "symbols": [...], "start": "YYYY-MM-DD", "day": "YYYY-MM-DD"}}``
  : ``stockml ingest`` as of the evening of ``day`` (what the CLI and the Lambda call);
- ``{"correct": {"symbols": [...], "date": "YYYY-MM-DD", "close": float}}``: a correction of an
  old day of each symbol (the store merges the partition: a base rewrite, as a compaction);
- ``{"compact": {"symbols": [...]}}``: fold each symbol's newest partition now;
- ``{"sqs": {"csv_path": DIR, "records": [...], "day": "YYYY-MM-DD"}}``: the ingest Lambda's
  SQS worker on these records (each body ``{"symbols": [...], "start": ...}``): Powertools'
  batch processor as functions/ingest/app.py sets it up, each record ingested by
  ``stockml.ingest.ingest_sqs_message`` as of the evening of ``day``.

It prints one JSON line per step (what the step reported) and exits 1 on an error.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable

import pandas as pd
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from stockml.idempotency import Once
from stockml.ingest import ingest_sqs_message, ingest_symbols
from stockml.settings import Settings, StoreSettings
from stockml.storage import Store


def _ingest_message(
    settings: Settings, store: Store, now: pd.Timestamp
) -> Callable[[SQSRecord], Once]:
    """The record handler of functions/ingest/app.py, with this job's clock."""
    return lambda record: ingest_sqs_message(record.raw_event, settings, store, now=now)


def main() -> int:
    job = json.loads(sys.argv[1])
    if job.get("log"):
        logging.basicConfig(
            filename=job["log"], level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
        )
    store_settings = StoreSettings(bucket=job["bucket"], endpoint_url=job["endpoint"])
    store = Store.from_settings(store_settings)
    print("ready", flush=True)
    sys.stdin.readline()
    for step in job["steps"]:
        ((kind, args),) = step.items()
        settings = Settings(store=store_settings)
        settings.ingest.providers = ["csv"]
        settings.ingest.csv_path = args.get("csv_path")
        evening = (
            pd.Timestamp(args.get("day", "2000-01-01")) + pd.Timedelta(hours=23)
        ).tz_localize("UTC")
        if kind == "sqs":
            answer = process_partial_response(
                event={"Records": args["records"]},
                record_handler=_ingest_message(settings, store, evening),
                processor=BatchProcessor(EventType.SQS, raise_on_entire_batch_failure=False),
            )
            print(json.dumps({"sqs": answer}), flush=True)
        elif kind == "ingest":
            report = ingest_symbols(
                settings,
                symbols=args["symbols"],
                start=args["start"],
                now=evening,
            )
            print(json.dumps({"ingest": report.totals()}), flush=True)
            if report.failed:
                print(json.dumps([s.error for s in report.failed]), file=sys.stderr)
                return 1
        elif kind == "correct":
            day = pd.Timestamp(args["date"])
            bars = store.read_bars(args["symbols"], start=day, end=day)
            bars["close"] = args["close"]
            bars["adj_close"] = args["close"]
            bars["high"] = bars[["high", "close"]].max(axis=1)
            bars["low"] = bars[["low", "close"]].min(axis=1)
            report = store.upsert_bars(bars)
            print(json.dumps({"correct": report.rows_changed}), flush=True)
        elif kind == "compact":
            written = store.compact(store.raw_prefix, args["symbols"])
            print(json.dumps({"compact": written}), flush=True)
        else:
            raise ValueError(f"unknown step {kind!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
