"""S3 failing in the middle of a run: the run fails loudly, a re-run completes, no row is lost.

The store talks to the session's real moto_server through a proxy (tests/utils/faulty_proxy.py)
that fails the requests a rule picks: S3's ``503 SlowDown`` on one prefix, or every request
after a given one dropped unanswered (an outage). ``AWS_MAX_ATTEMPTS=1``: botocore does not
retry, so a failed request fails the write (with retries the same faults only cost time). The
oracle counts the rows a fresh reader sees against the provider's files.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from stockml.ingest import ingest_symbols
from stockml.local import LocalServer
from stockml.settings import Settings, StoreSettings
from utils.faulty_proxy import FaultyProxy
from utils.lambda_context import LambdaContext
from utils.modules import load_file
from utils.store_rows import assert_stored_exactly, universe, write_csv

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
START = "2022-10-03"


@pytest.fixture(autouse=True)
def _no_sdk_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")


def _evening(day: pd.Timestamp) -> pd.Timestamp:
    return (day + pd.Timedelta(hours=23)).tz_localize("UTC")


def _ingest(store: StoreSettings, folder: Path, symbols: list[str], day: pd.Timestamp):  # type: ignore[no-untyped-def]
    settings = Settings(store=store)
    settings.ingest.providers = ["csv"]
    settings.ingest.csv_path = str(folder)
    return ingest_symbols(settings, symbols=symbols, start=START, now=_evening(day))


def test_a_backfill_whose_writes_to_one_year_fail_is_completed_by_a_re_run(
    tmp_path: Path, store_settings: StoreSettings, moto_server: LocalServer
) -> None:
    # GIVEN 6 symbols' histories over 2022-2024 in the provider's files, and an S3 that answers
    # 503 SlowDown to every PUT under the 2023 folder (S3 throttles per prefix)
    full = universe(6, START, "2024-03-28")
    symbols = sorted(full)
    last_day = full["S00"]["date"].iloc[-1]
    write_csv(tmp_path / "csv", full)
    throttled = True
    proxy = FaultyProxy(
        moto_server.url,
        lambda n, method, path: (
            "error" if throttled and method == "PUT" and "/year=2023/" in path else None
        ),
    )
    through = StoreSettings(bucket=store_settings.bucket, endpoint_url=proxy.url)

    with proxy.running():
        # WHEN the backfill runs
        first = _ingest(through, tmp_path / "csv", symbols, last_day)

        # THEN every symbol failed, with S3's answer in its error
        assert proxy.faults(), "no request was failed"
        assert len(first.failed) == len(symbols)
        assert all("SlowDown" in str(s.error) for s in first.failed)

        # WHEN S3 recovers and the same run is made again
        throttled = False
        second = _ingest(through, tmp_path / "csv", symbols, last_day)

    # THEN it succeeds and every row of every year is stored exactly once
    assert not second.failed, second.failed
    assert_stored_exactly(store_settings, full)


def _ingest_handler(
    monkeypatch: pytest.MonkeyPatch, store: StoreSettings, csv_path: Path
) -> ModuleType:
    """functions/ingest/app.py loaded as Lambda loads it, with the template's environment."""
    monkeypatch.setenv("STOCKML_STORE__BUCKET", store.bucket)
    monkeypatch.setenv("STOCKML_STORE__ENDPOINT_URL", str(store.endpoint_url))
    monkeypatch.setenv("STOCKML_INGEST__PROVIDERS", '["csv"]')
    monkeypatch.setenv("STOCKML_INGEST__CSV_PATH", str(csv_path))
    return load_file(REPO / "functions" / "ingest" / "app.py", "ingest_app")


def test_an_sqs_batch_cut_off_by_an_outage_after_its_write_is_done_by_the_redelivery(
    tmp_path: Path,
    store_settings: StoreSettings,
    moto_server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN 4 symbols stored up to a session, the provider's files 5 sessions further, and the
    # ingest Lambda behind an S3 that goes down right after the batch's data object is PUT
    # (the second PUT: the first claims the message's idempotency marker)
    full = universe(4, "2024-01-02", "2024-02-29")
    symbols = sorted(full)
    days = list(full["S00"]["date"])
    write_csv(tmp_path / "csv", full)
    assert not _ingest(store_settings, tmp_path / "csv", symbols, days[-6]).failed
    puts: list[int] = []
    down = True

    def outage(n: int, method: str, path: str) -> str | None:
        if method == "PUT":
            puts.append(n)
        return "drop" if down and len(puts) >= 2 and n > puts[1] else None

    proxy = FaultyProxy(moto_server.url, outage)  # type: ignore[arg-type]
    through = StoreSettings(bucket=store_settings.bucket, endpoint_url=proxy.url)
    record = {
        "messageId": "6f1c9a52-0000-4000-8000-00000000000a",
        "body": json.dumps({"symbols": symbols, "start": "2024-01-02"}),
    }

    with proxy.running():
        app = _ingest_handler(monkeypatch, through, tmp_path / "csv")
        # a Lambda with 1 s left: the delivery's lease on the message ends 1 s after it starts
        context = LambdaContext(function_name="stockml-ingest", remaining_ms=1000)

        # WHEN the message is delivered and S3 goes down after its write
        first = app.lambda_handler({"Records": [record]}, context)

        # THEN the delivery failed: SQS keeps the message
        assert first == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
        assert proxy.faults(), "no request was dropped"

        # WHEN S3 is back and SQS delivers the message again once the lease ran out
        down = False
        time.sleep(1.5)
        second = app.lambda_handler({"Records": [record]}, context)

    # THEN the redelivery is acknowledged and every row is stored exactly once
    assert second == {"batchItemFailures": []}
    assert_stored_exactly(store_settings, full)
