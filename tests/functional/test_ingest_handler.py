"""The ingest Lambda, invoked in-process with the events/ JSON files, against a real moto_server.

The environment is what template.yaml injects (bucket, queue URL, batch size, providers);
the sample provider stands in for the vendors so the run is offline.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from stockml.errors import IngestError
from stockml.idempotency import marker_key
from stockml.local import LocalServer
from stockml.settings import StoreSettings
from stockml.storage import Store
from utils.lambda_context import LambdaContext
from utils.modules import load_file

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


@pytest.fixture
def queue_url(moto_server: LocalServer) -> str:
    sqs = boto3.client("sqs", endpoint_url=moto_server.url, region_name="us-east-1")
    return str(sqs.create_queue(QueueName=f"ingest-{id(object())}")["QueueUrl"])


@pytest.fixture
def handler(
    monkeypatch: pytest.MonkeyPatch,
    store_settings: StoreSettings,
    moto_server: LocalServer,
    queue_url: str,
):  # type: ignore[no-untyped-def]
    # the variables template.yaml sets on IngestFunction (and Globals)
    monkeypatch.setenv("STOCKML_STORE__BUCKET", store_settings.bucket)
    monkeypatch.setenv("STOCKML_STORE__ENDPOINT_URL", moto_server.url)
    monkeypatch.setenv("STOCKML_INGEST__QUEUE_URL", queue_url)
    monkeypatch.setenv("STOCKML_INGEST__BATCH_SIZE", "2")
    monkeypatch.setenv("STOCKML_INGEST__PROVIDERS", '["sample"]')
    monkeypatch.setenv("STOCKML_INGEST__SYMBOLS", '["MSFT", "^GSPC", "^IXIC", "^VIX"]')
    monkeypatch.setenv("STOCKML_INGEST__START", "2017-06-01")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_server.url)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "stockml")
    # loaded from its file, as Lambda loads app.py from the function's CodeUri
    return load_file(REPO / "functions" / "ingest" / "app.py", "ingest_app").lambda_handler


def test_schedule_plans_batches_and_the_sqs_worker_ingests_them(
    handler,
    store_settings: StoreSettings,
    moto_server: LocalServer,
    queue_url: str,
    lambda_context: LambdaContext,  # type: ignore[no-untyped-def]
) -> None:
    # GIVEN the scheduled EventBridge event
    event = load_event("ingest_schedule.json")

    # WHEN the planner runs
    planned = handler(event, lambda_context)

    # THEN the 4-symbol universe is on the queue as 2 batches of 2
    assert planned["batches"] == 2 and planned["symbols"] == 4
    sqs = boto3.client("sqs", endpoint_url=moto_server.url, region_name="us-east-1")
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(s for m in messages for s in json.loads(m["Body"])["symbols"]) == sorted(
        ["MSFT", "^GSPC", "^IXIC", "^VIX"]
    )

    # WHEN the queued messages reach the worker as one SQS batch event (the events/ shape)
    batch = load_event("ingest_sqs_batch.json")
    template = batch["Records"][0]
    batch["Records"] = [
        {**template, "messageId": m["MessageId"], "body": m["Body"]} for m in messages
    ]
    answer = handler(batch, lambda_context)

    # THEN no message failed and every symbol is in the store
    assert answer == {"batchItemFailures": []}
    stored = Store.from_settings(store_settings).summary().set_index("symbol")
    assert sorted(stored.index) == sorted(["MSFT", "^GSPC", "^IXIC", "^VIX"])
    assert (stored["first"] >= "2017-06-01").all() and (stored["rows"] > 0).all()


def test_the_settings_are_read_once_per_container(
    handler,
    monkeypatch: pytest.MonkeyPatch,
    lambda_context: LambdaContext,  # type: ignore[no-untyped-def]
) -> None:
    # GIVEN a container started with batches of 2 symbols
    # WHEN its environment changes afterwards (Lambda's never does within a container)
    monkeypatch.setenv("STOCKML_INGEST__BATCH_SIZE", "1")
    planned = handler(load_event("ingest_schedule.json"), lambda_context)

    # THEN its invocations use the settings it read at start: 4 symbols in 2 batches
    assert planned["batches"] == 2


def test_sqs_event_reports_only_the_failing_message(
    handler,
    store_settings: StoreSettings,
    lambda_context: LambdaContext,  # type: ignore[no-untyped-def]
) -> None:
    # GIVEN the recorded SQS batch, with a second message for a symbol no provider knows
    event = load_event("ingest_sqs_batch.json")
    event["Records"][1]["body"] = json.dumps({"symbols": ["NOSUCH", "^VIX"]})

    # WHEN the worker handles it
    answer = handler(event, lambda_context)

    # THEN only that message goes back to the queue (retry, then DLQ), the other one is done
    assert answer == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    stored = set(Store.from_settings(store_settings).last_dates())
    assert stored == {"MSFT", "^GSPC", "^VIX"}  # ^VIX of the failing batch is not lost


def test_a_message_another_delivery_holds_goes_back_to_the_queue(
    handler,
    store_settings: StoreSettings,
    lambda_context: LambdaContext,  # type: ignore[no-untyped-def]
) -> None:
    # GIVEN the recorded SQS batch, whose first message another delivery is processing now
    event = load_event("ingest_sqs_batch.json")
    held = event["Records"][0]["messageId"]
    store = Store.from_settings(store_settings)
    running = {"status": "running", "message_id": held, "expires_at": time.time() + 600}
    store.put_bytes(marker_key(store, held), json.dumps(running).encode())

    # WHEN the worker gets that message alone, then the whole batch
    alone = handler({"Records": event["Records"][:1]}, lambda_context)
    both = handler(event, lambda_context)

    # THEN a batch whose every message is held is answered, not raised, and the held message
    # goes back to the queue both times; the other one is ingested; the held one's symbols are
    # left to its delivery
    assert alone == {"batchItemFailures": [{"itemIdentifier": held}]}
    assert both == {"batchItemFailures": [{"itemIdentifier": held}]}
    assert set(store.last_dates()) == {"^IXIC", "^VIX"}


def test_manual_event_ingests_now_and_is_idempotent(
    handler,
    store_settings: StoreSettings,
    lambda_context: LambdaContext,  # type: ignore[no-untyped-def]
) -> None:
    # GIVEN the manual event (symbols and start date)
    event = load_event("ingest_manual.json")

    # WHEN it is invoked twice
    first = handler(event, lambda_context)
    second = handler(event, lambda_context)

    # THEN the first run wrote the rows, the second nothing, and the store holds each row once
    assert first["totals"]["written"] > 0 and first["totals"]["failed"] == 0
    assert second["totals"]["written"] == 0
    bars = Store.from_settings(store_settings).read_bars()
    assert sorted(bars["symbol"].unique()) == sorted(event["symbols"])
    assert bars["date"].min().year == 2016 and not bars.duplicated(["symbol", "date"]).any()


def test_manual_event_fails_loudly_for_an_unknown_symbol(
    handler, lambda_context: LambdaContext
) -> None:  # type: ignore[no-untyped-def]
    # GIVEN a manual event with one unknown symbol WHEN invoked THEN the invocation fails
    with pytest.raises(IngestError, match="NOSUCH"):
        handler({"symbols": ["NOSUCH", "^VIX"]}, lambda_context)
