"""stockml.predlog: served forecasts buffered, flushed in batches under unique keys, retried."""

from __future__ import annotations

import json
import threading
from datetime import date
from typing import Any

import numpy as np
import pytest

from stockml import predlog
from stockml.errors import StoreError
from stockml.inference import Forecast, ModelForecast
from stockml.predlog import PredictionLog, forecast_lines, incoming_prefix


class Bucket:
    """An in-memory stand-in for the bucket's PUT, which can be told to fail."""

    def __init__(self, failures: int = 0) -> None:
        self.objects: dict[str, bytes] = {}
        self.puts: list[str] = []
        self.failures = failures
        self.written = threading.Event()

    def put_bytes(self, key: str, data: bytes) -> None:
        self.puts.append(key)
        if self.failures:
            self.failures -= 1
            raise StoreError("s3 is down")
        self.objects[key] = data
        self.written.set()


def forecast(as_of: date = date(2017, 11, 10), days: int = 2, symbol: str = "MSFT") -> Forecast:
    returns = np.array([0.01, -0.02, 0.03])[:days]
    models = {
        name: ModelForecast(
            log_returns=returns * k,
            prices=100.0 * np.exp(returns * k),
            lower=100.0 * np.exp(returns * k - 0.05),
            upper=100.0 * np.exp(returns * k + 0.05),
            level=0.9,
        )
        for k, name in ((1.0, "ensemble"), (0.5, "xgboost"))
    }
    sessions = (date(2017, 11, 13), date(2017, 11, 14), date(2017, 11, 15))[:days]
    return Forecast(symbol, "v1", as_of, 100.0, sessions, models, age_sessions=0, stale=False)


def lines(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines()]


def test_a_record_is_one_served_model_and_horizon() -> None:
    served = "2026-01-01T00:00:00+00:00"
    records = [
        json.loads(x) for x in forecast_lines(forecast(), "req-1", served, "predict", "w", 1)
    ]
    assert len(records) == 4  # 2 models x 2 days
    first = records[0]
    assert first["model"] == "ensemble" and first["horizon"] == 1
    assert first["as_of"] == "2017-11-10" and first["target_date"] == "2017-11-13"
    assert first["predicted_close"] == pytest.approx(100.0 * np.exp(0.01))
    assert first["predicted_log_return"] == pytest.approx(0.01)
    assert first["lower"] == pytest.approx(100.0 * np.exp(0.01 - 0.05))
    assert first["request_id"] == "req-1" and first["model_version"] == "v1"


def test_records_wait_in_memory_until_a_flush_writes_one_object_per_as_of_date() -> None:
    # GIVEN a log without its background thread
    bucket = Bucket()
    log = PredictionLog(bucket, "predictions", background=False)
    # WHEN three requests are recorded (two as-of dates)
    log.record(forecast(date(2017, 11, 9)), "a")
    log.record(forecast(date(2017, 11, 10)), "b")
    log.record(forecast(date(2017, 11, 10)), "c")
    # THEN nothing was written on the request path
    assert bucket.puts == [] and log.waiting == 12
    # AND a flush writes one JSON-lines object per date, under the incoming folder
    assert log.flush() == 12
    assert sorted(bucket.objects) == [
        f"{incoming_prefix('predictions', date(2017, 11, 9))}{log.writer_id}-00000001.jsonl",
        f"{incoming_prefix('predictions', date(2017, 11, 10))}{log.writer_id}-00000002.jsonl",
    ]
    later = lines(bucket.objects[sorted(bucket.objects)[1]])
    assert [r["request_id"] for r in later] == ["b"] * 4 + ["c"] * 4
    # AND every record has its own id
    ids = [r["record_id"] for data in bucket.objects.values() for r in lines(data)]
    assert len(set(ids)) == 12
    assert log.stats() == {"recorded": 3, "written": 12, "dropped": 0, "failed_puts": 0}


def test_a_flush_is_due_by_size_or_age() -> None:
    now = [0.0]
    log = PredictionLog(
        Bucket(), max_records=5, max_age_s=60, clock=lambda: now[0], background=False
    )
    assert not log.due()
    log.record(forecast(), "a")  # 4 records: 2 models x 2 days
    assert not log.due()
    now[0] = 60.0  # the oldest record is a minute old
    assert log.due()
    log.flush()
    log.record(forecast(), "b")
    assert not log.due()
    log.record(forecast(), "c")
    assert log.due()  # 8 records wait


def test_the_background_thread_flushes_a_full_buffer() -> None:
    bucket = Bucket()
    log = PredictionLog(bucket, max_records=2, max_age_s=3600)
    log.record(forecast(), "a")
    log.record(forecast(), "b")
    assert bucket.written.wait(10), "the background flush did not write"
    log.close()
    assert log.stats()["written"] == 8


def test_a_failed_put_is_retried_under_the_same_key() -> None:
    # GIVEN a bucket whose first PUT fails
    bucket = Bucket(failures=1)
    log = PredictionLog(bucket, background=False)
    log.record(forecast(), "a")
    # WHEN the flush fails
    with pytest.raises(StoreError):
        log.flush()
    assert log.waiting == 4 and log.failed_puts == 1
    # THEN the next flush writes the same batch under the same key (an idempotent retry)
    log.record(forecast(), "b")
    assert log.flush() == 8
    assert bucket.puts[0] == bucket.puts[1]
    assert sorted(r["request_id"] for d in bucket.objects.values() for r in lines(d)) == (
        ["a"] * 4 + ["b"] * 4
    )


def test_an_outage_drops_the_oldest_records_beyond_the_bound_and_counts_them() -> None:
    bucket = Bucket(failures=10)
    log = PredictionLog(bucket, max_pending=8, background=False)
    for name in "abc":
        log.record(forecast(), name)
        with pytest.raises(StoreError):
            log.flush()
    # three batches of 4 records failed; only 8 records may wait: the oldest batch went
    assert log.dropped == 4 and log.waiting == 8


def test_two_logs_never_share_a_key() -> None:
    bucket = Bucket()
    one, two = (PredictionLog(bucket, background=False) for _ in range(2))
    for log in (one, two):
        log.record(forecast(), "x")
        log.flush()
    assert len(bucket.objects) == 2 and one.writer_id != two.writer_id


def test_close_writes_what_is_left() -> None:
    bucket = Bucket()
    log = PredictionLog(bucket, max_age_s=3600)
    log.record(forecast(), "a")
    log.close()
    assert log.written == 4
    log.record(forecast(), "late")  # after close: ignored, not lost silently in a thread
    assert log.recorded == 1


def forecast_records(
    forecast: Forecast, request_id: str, served_at: str, endpoint: str
) -> list[dict[str, Any]]:
    """The oracle: one served forecast's records built field by field as dicts."""
    out = []
    for name, f in forecast.models.items():
        for h in range(len(f.prices)):
            out.append(
                {
                    "request_id": request_id,
                    "served_at": served_at,
                    "endpoint": endpoint,
                    "symbol": forecast.symbol,
                    "model_version": forecast.model_version,
                    "model": name,
                    "as_of": forecast.last_date.isoformat(),
                    "horizon": h + 1,
                    "target_date": forecast.dates[h].isoformat()
                    if h < len(forecast.dates)
                    else None,
                    "last_close": float(forecast.last_close),
                    "predicted_close": float(f.prices[h]),
                    "predicted_log_return": float(f.log_returns[h]),
                    "lower": None if f.lower is None else float(f.lower[h]),
                    "upper": None if f.upper is None else float(f.upper[h]),
                    "level": f.level,
                    "data_age_sessions": forecast.age_sessions,
                    "stale": bool(forecast.stale),
                }
            )
    return out


@pytest.mark.parametrize("request_id", ["req-1", "", 'a "quoted" \\ id\n', "r\u00e9q-\u2603"])
def test_the_lines_are_the_records_built_as_dicts(request_id: str) -> None:
    # GIVEN forecasts with and without bands, a NaN and an infinite price, stale and not
    plain = forecast(days=3)
    odd = Forecast(
        "BRK-B",
        "v2",
        date(2017, 11, 10),
        250.5,
        plain.dates,
        {
            "lstm": ModelForecast(
                log_returns=np.array([0.01, float("nan"), -0.02]),
                prices=np.array([251.0, float("inf"), 245.0]),
                lower=None,
                upper=None,
                level=None,
            )
        },
        age_sessions=None,
        stale=True,
    )
    for f in (plain, odd):
        # WHEN the log writes its lines
        lines = forecast_lines(f, request_id, "2026-01-01T00:00:00+00:00", "plot", "abc", 7)
        # THEN each parses to the record the dict-built oracle gives, with its record id
        expected = forecast_records(f, request_id, "2026-01-01T00:00:00+00:00", "plot")
        parsed = [json.loads(line) for line in lines]
        ids = [r.pop("record_id") for r in parsed]
        assert ids == [f"abc-{n}" for n in range(7, 7 + len(expected))]
        assert json.dumps(parsed, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_a_forecast_served_to_many_requests_is_encoded_once_per_flush_and_logged_for_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a log counting how often it encodes a forecast
    encodings: list[str] = []
    real = predlog.forecast_bodies

    def counted(f: Forecast) -> list[str]:
        encodings.append(f.symbol)
        return real(f)

    monkeypatch.setattr(predlog, "forecast_bodies", counted)
    bucket = Bucket()
    log = PredictionLog(bucket, "predictions", background=False)
    # WHEN one cached forecast is served to three requests (two endpoints) and another to one
    cached, other = forecast(days=3), forecast(days=2, symbol="AAPL")
    served = [(cached, "a", "predict"), (other, "b", "predict"), (cached, "c", "plot")]
    served.append((cached, 'd "quoted"', "predict"))
    for f, request_id, endpoint in served:
        log.record(f, request_id, endpoint)
    assert log.flush() == 3 * 6 + 4
    # THEN each forecast was encoded once
    assert sorted(encodings) == ["AAPL", "MSFT"]
    # AND every request has its forecast's records with its own request id and endpoint
    records = lines(next(iter(bucket.objects.values())))
    for f, request_id, endpoint in served:
        got = [r for r in records if r["request_id"] == request_id]
        expected = forecast_records(f, request_id, got[0]["served_at"], endpoint)
        for r in got:
            r.pop("record_id")
        assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)
    # AND record ids stay unique
    assert len({r["record_id"] for r in lines(next(iter(bucket.objects.values())))}) == 22
