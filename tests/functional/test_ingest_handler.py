"""The ingest Lambda, invoked in-process with the events/ JSON files, against a real moto_server.

The environment is what template.yaml injects (bucket, queue URL, batch size, providers);
the sample provider stands in for the vendors so the run is offline.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from stockml.errors import IngestError
from stockml.local import LocalServer
from stockml.settings import StoreSettings
from stockml.storage import Store

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"


@dataclass
class LambdaContext:
    function_name: str = "stockml-dev-IngestFunction"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:stockml-dev-IngestFunction"
    )
    aws_request_id: str = "da658bd3-2d6f-4e7b-8ec2-937234644fdc"
    remaining_ms: int = 900_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


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
    spec = importlib.util.spec_from_file_location("ingest_app", REPO / "functions/ingest/app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.lambda_handler


def test_schedule_plans_batches_and_the_sqs_worker_ingests_them(
    handler,
    store_settings: StoreSettings,
    moto_server: LocalServer,
    queue_url: str,  # type: ignore[no-untyped-def]
) -> None:
    # GIVEN the scheduled EventBridge event
    event = load_event("ingest_schedule.json")

    # WHEN the planner runs
    planned = handler(event, LambdaContext())

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
    answer = handler(batch, LambdaContext())

    # THEN no message failed and every symbol is in the store
    assert answer == {"batchItemFailures": []}
    stored = Store.from_settings(store_settings).summary().set_index("symbol")
    assert sorted(stored.index) == sorted(["MSFT", "^GSPC", "^IXIC", "^VIX"])
    assert (stored["first"] >= "2017-06-01").all() and (stored["rows"] > 0).all()


def test_sqs_event_reports_only_the_failing_message(handler, store_settings: StoreSettings) -> None:  # type: ignore[no-untyped-def]
    # GIVEN the recorded SQS batch, with a second message for a symbol no provider knows
    event = load_event("ingest_sqs_batch.json")
    event["Records"][1]["body"] = json.dumps({"symbols": ["NOSUCH", "^VIX"]})

    # WHEN the worker handles it
    answer = handler(event, LambdaContext())

    # THEN only that message goes back to the queue (retry, then DLQ), the other one is done
    assert answer == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    stored = set(Store.from_settings(store_settings).last_dates())
    assert stored == {"MSFT", "^GSPC", "^VIX"}  # ^VIX of the failing batch is not lost


def test_manual_event_ingests_now_and_is_idempotent(handler, store_settings: StoreSettings) -> None:  # type: ignore[no-untyped-def]
    # GIVEN the manual event (symbols and start date)
    event = load_event("ingest_manual.json")

    # WHEN it is invoked twice
    first = handler(event, LambdaContext())
    second = handler(event, LambdaContext())

    # THEN the first run wrote the rows, the second nothing, and the store holds each row once
    assert first["totals"]["written"] > 0 and first["totals"]["failed"] == 0
    assert second["totals"]["written"] == 0
    bars = Store.from_settings(store_settings).read_bars()
    assert sorted(bars["symbol"].unique()) == sorted(event["symbols"])
    assert bars["date"].min().year == 2016 and not bars.duplicated(["symbol", "date"]).any()


def test_manual_event_fails_loudly_for_an_unknown_symbol(handler) -> None:  # type: ignore[no-untyped-def]
    # GIVEN a manual event with one unknown symbol WHEN invoked THEN the invocation fails
    with pytest.raises(IngestError, match="NOSUCH"):
        handler({"symbols": ["NOSUCH", "^VIX"]}, LambdaContext())
