"""Concurrent writer PROCESSES against one moto_server: no row lost, none stored twice.

Each writer is a separate Python process (tests/utils/store_writer.py) running what
``stockml ingest`` runs; they import everything first and then start at the same instant.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from stockml.ingest import ingest_symbols
from stockml.local import LocalServer
from stockml.settings import Settings, StoreSettings
from stockml.storage import Store
from utils.store_rows import assert_stored_exactly as _assert_exactly
from utils.store_rows import universe
from utils.store_rows import write_csv as _write_csv

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WRITER = Path(__file__).resolve().parents[1] / "utils" / "store_writer.py"
START = "2024-01-02"


def _universe(n: int, end: str) -> dict[str, pd.DataFrame]:
    return universe(n, START, end)


def _run_writers(
    store_settings: StoreSettings,
    jobs: list[list[dict[str, object]]],
    timeout_s: float = 240,
    logs: Path | None = None,
) -> list[list[dict[str, object]]]:
    """Start one process per job; once all are ready they begin together. Their reports.

    With ``logs``, process ``i`` logs (INFO) to ``logs/writer-<i>.log``.
    """
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WRITER),
                json.dumps(
                    {
                        "endpoint": store_settings.endpoint_url,
                        "bucket": store_settings.bucket,
                        "steps": steps,
                        "log": None if logs is None else str(logs / f"writer-{i}.log"),
                    }
                ),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, steps in enumerate(jobs)
    ]
    for proc in procs:  # each has imported pandas & co.
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise AssertionError(proc.communicate(timeout=timeout_s)[1][-3000:])
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout_s)
        assert proc.returncode == 0, err[-3000:]
        reports.append([json.loads(line) for line in out.splitlines() if line.startswith("{")])
    return reports


def _ingest_now(
    store_settings: StoreSettings, folder: Path, symbols: list[str], day: str
) -> dict[str, int]:
    """One ``stockml ingest`` run as of the evening of ``day``, in this process."""
    settings = Settings(store=store_settings)
    settings.ingest.providers = ["csv"]
    settings.ingest.csv_path = str(folder)
    evening = (pd.Timestamp(day) + pd.Timedelta(hours=23)).tz_localize("UTC")
    report = ingest_symbols(settings, symbols=symbols, start=START, now=evening)
    assert not report.failed, report.failed
    return report.totals()


def _ingest(folder: Path, symbols: list[str], day: str) -> dict[str, object]:
    return {"ingest": {"csv_path": str(folder), "symbols": symbols, "start": START, "day": day}}


def test_ingest_processes_started_together_store_each_new_day_once(
    tmp_path: Path, store_settings: StoreSettings, moto_server: LocalServer
) -> None:
    # GIVEN 25 symbols stored up to a day, and CSV files holding 5 more sessions
    full = _universe(25, "2024-06-07")
    days = list(full["S00"]["date"])
    stored_to, new_to = days[-6], days[-1]
    symbols = sorted(full)
    folder = tmp_path / "csv"
    _write_csv(folder, full)
    _ingest_now(store_settings, folder, symbols, f"{stored_to:%Y-%m-%d}")

    # WHEN three ingest processes start together with the same 5 new days
    reports = _run_writers(
        store_settings, [[_ingest(folder, symbols, f"{new_to:%Y-%m-%d}")] for _ in range(3)]
    )

    # THEN every (symbol, day) is stored exactly once, with the provider's values
    assert all(r[0]["ingest"]["failed"] == 0 for r in reports)
    _assert_exactly(store_settings, full)
    # AND a re-run finds nothing to fetch and changes nothing
    assert _ingest_now(store_settings, folder, symbols, f"{new_to:%Y-%m-%d}")["written"] == 0
    _assert_exactly(store_settings, full)


def test_writer_processes_interleaving_daily_runs_and_compactions_keep_every_row_once(
    tmp_path: Path, store_settings: StoreSettings, moto_server: LocalServer
) -> None:
    # GIVEN 12 symbols stored up to a day, and CSV files holding 10 more sessions
    full = _universe(12, "2024-06-14")
    days = [f"{d:%Y-%m-%d}" for d in full["S00"]["date"]]
    symbols = sorted(full)
    folder = tmp_path / "csv"
    _write_csv(folder, full)
    _ingest_now(store_settings, folder, symbols, days[-11])

    # WHEN three processes each run the 10 daily ingestions (the 9th folds the deltas), while
    # a fourth keeps correcting an old day (a base rewrite) and compacting the partitions
    daily = [[_ingest(folder, symbols, day) for day in days[-10:]] for _ in range(3)]
    fixes: list[dict[str, object]] = []
    for i in range(6):
        fixes.append({"correct": {"symbols": symbols, "date": days[5], "close": 500.0 + i}})
        fixes.append({"compact": {"symbols": symbols}})
    reports = _run_writers(store_settings, [*daily, fixes])

    # THEN every (symbol, day) is stored once with the provider's values, but the corrected
    # day, which holds the last correction
    assert all(step["ingest"]["failed"] == 0 for r in reports[:3] for step in r)
    assert all(step.get("correct", 1) > 0 for step in reports[3])  # each one changed the day
    for frame in full.values():
        fixed = frame["date"] == days[5]
        frame.loc[fixed, ["close", "adj_close"]] = 505.0
        frame.loc[fixed, "high"] = frame.loc[fixed, ["high", "close"]].max(axis=1)
        frame.loc[fixed, "low"] = frame.loc[fixed, ["low", "close"]].min(axis=1)
    _assert_exactly(store_settings, full)


def test_an_sqs_message_delivered_twice_at_once_and_again_later_is_ingested_once(
    tmp_path: Path, store_settings: StoreSettings, moto_server: LocalServer
) -> None:
    # GIVEN 10 symbols stored up to a day, CSV files holding 5 more sessions, and the ingest
    # Lambda's SQS message for them
    full = _universe(10, "2024-06-07")
    days = [f"{d:%Y-%m-%d}" for d in full["S00"]["date"]]
    symbols = sorted(full)
    folder = tmp_path / "csv"
    _write_csv(folder, full)
    _ingest_now(store_settings, folder, symbols, days[-6])
    record = {
        "messageId": "4d3f2b1a-0000-4000-8000-000000000001",
        "body": json.dumps({"symbols": symbols, "start": START}),
    }
    sqs = {"sqs": {"csv_path": str(folder), "records": [record], "day": days[-1]}}

    # WHEN two deliveries of it run at once (two Lambda processes)
    logs = tmp_path / "logs"
    logs.mkdir()
    answers = [r[0]["sqs"] for r in _run_writers(store_settings, [[sqs], [sqs]], logs=logs)]

    # THEN the batch was ingested once: one delivery did it, the other one either was refused
    # (the first one held the message: it goes back to the queue) or found it done
    runs = [p.read_text().count("stockml.ingest ingest up to") for p in sorted(logs.iterdir())]
    assert sorted(runs) == [0, 1], runs
    refused = [a for a in answers if a["batchItemFailures"]]
    assert all(a["batchItemFailures"] == [{"itemIdentifier": record["messageId"]}] for a in refused)
    assert len(refused) <= 1
    _assert_exactly(store_settings, full)

    # WHEN SQS delivers it once more, after both ended
    keys = Store.from_settings(store_settings).list_keys("raw/")
    again = _run_writers(store_settings, [[sqs]], logs=logs)[0][0]["sqs"]

    # THEN it is acknowledged without fetching or writing anything
    assert again == {"batchItemFailures": []}
    assert Store.from_settings(store_settings).list_keys("raw/") == keys
    _assert_exactly(store_settings, full)
