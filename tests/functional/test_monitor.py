"""The monitor on a replay of real data: the test bundle served on MSFT's last 70 sessions of
the embedded data (the serving Predictor, recorded by the prediction log), then realised.

The live figures are recomputed here from the raw closes and the served price forecasts alone
(no log returns or bounds from the code under test); a re-run changes nothing; a retraining
is triggered once a day; an injected drift triggers one and no drift does not; a stale feed is
reported."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest

from stockml.local import LocalServer
from stockml.model_config import ModelConfig
from stockml.monitoring.monitor import run_monitor
from stockml.monitoring.predictions import read_log
from stockml.monitoring.results import retrain_key
from stockml.settings import Settings
from stockml.storage import Store
from utils.api_fixtures import new_bucket
from utils.monitoring import SYMBOL, replay, replay_window
from utils.serving_bundle import BuiltBundle, publish

pytestmark = pytest.mark.integration

SESSIONS = 70
WINDOW = 60  # monitoring.live.window_sessions
SERIES = 20  # monitoring.live.series_sessions
VERSION = "v-test-1"


@pytest.fixture
def replayed(moto_server: LocalServer, serving_bundle: BuiltBundle) -> Settings:
    """A fresh bucket holding the bundle and its data, and MSFT's last 70 sessions served."""
    settings = Settings(store=new_bucket(moto_server))
    store = Store.from_settings(settings.store)
    publish(store, serving_bundle)
    replay(store, serving_bundle, *replay_window(serving_bundle, SESSIONS))
    return settings


def last_day(built: BuiltBundle) -> date:
    return replay_window(built, SESSIONS)[1].date()


def monitor(settings: Settings, run_date: date, **kwargs: Any) -> dict[str, Any]:
    store = Store.from_settings(settings.store)
    return run_monitor(store, settings, ModelConfig.from_yaml(), run_date, **kwargs)


class Trigger:
    """Counts the training jobs it is asked to start (a stand-in for AWS Batch's SubmitJob)."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[list[str], list[str]]] = []
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self, symbols: list[str], reasons: list[str]) -> dict[str, Any]:
        with self._lock:
            self.calls.append((symbols, reasons))
        if self.fail:
            raise RuntimeError("Batch refused the job")
        return {"kind": "test", "job_id": f"job-{len(self.calls)}"}


def oracle(
    built: BuiltBundle, served: pd.DataFrame, window_sessions: int = WINDOW
) -> dict[str, dict[int, dict[str, float]]]:
    """The live figures of each model and horizon over the last ``window_sessions`` realised
    sessions, from the raw closes and the served prices only."""
    bars = built.bars
    closes = bars[bars["symbol"] == SYMBOL].sort_values("date").set_index("date")["adj_close"]
    position = {d: i for i, d in enumerate(closes.index)}
    values = closes.to_numpy()
    drift = built.manifest.extra["baselines"]["drift"]
    realised = sorted(d for d in served["as_of"].unique() if position[d] + 1 < len(values))
    window = set(realised[-window_sessions:])
    out: dict[str, dict[int, dict[str, float]]] = {}
    for (model, h), rows in served[served["as_of"].isin(window)].groupby(["model", "horizon"]):
        i = rows["as_of"].map(position).to_numpy()
        known = i + h < len(values)
        rows, i = rows[known], i[known]
        future = values[i + h]
        y = np.log(future / values[i])
        pred = np.log(rows["predicted_close"].to_numpy() / rows["last_close"].to_numpy())
        directional = (pred != 0) & (y != 0)
        out.setdefault(model, {})[h] = {
            "n": len(y),
            "rmse_ratio_vs_naive": np.sqrt(np.mean((pred - y) ** 2) / np.mean(y**2)),
            "rmse_ratio_vs_drift": np.sqrt(
                np.mean((pred - y) ** 2) / np.mean((drift[h - 1] - y) ** 2)
            ),
            "directional_accuracy": np.mean(np.sign(pred[directional]) == np.sign(y[directional])),
            "directional_accuracy_always_long": np.mean(y[directional] > 0),
            # in prices: the realised close inside the served price band
            "interval_coverage": np.mean(
                (rows["lower"].to_numpy() <= future) & (future <= rows["upper"].to_numpy())
            ),
        }
    return out


def test_live_metrics_equal_an_independent_computation(
    replayed: Settings, serving_bundle: BuiltBundle
) -> None:
    # GIVEN MSFT's last 70 sessions served by the bundle
    # WHEN the monitor runs as of the last of them
    result = monitor(replayed, last_day(serving_bundle))
    # THEN every served forecast is in the compacted log, once
    store = Store.from_settings(replayed.store)
    served = read_log(store, replayed.store.predictions_prefix)
    assert len(served) == SESSIONS * 3 * 5  # sessions x models x horizons
    assert (
        served["record_id"].is_unique
        and served.groupby(["as_of", "model", "horizon"]).size().eq(1).all()
    )
    # AND the live figures equal the independent computation, per model and horizon
    live = result["status"]["live"][VERSION]
    assert live["window"]["sessions"] == WINDOW and live["served"] == SESSIONS
    assert live["pending"] == 1  # the last session's outcome is not realised yet
    expected = oracle(serving_bundle, served)
    assert set(expected) == {"ridge", "lstm", "ensemble"}
    for model, horizons in expected.items():
        for h, figures in horizons.items():
            got = live["models"][model][str(h)]
            for key, value in figures.items():
                assert got[key] == pytest.approx(value, rel=1e-9), (model, h, key)
    # AND the baselines are scored on the same rows (naive's ratio to itself is 1)
    assert live["models"]["naive"]["1"]["rmse_ratio_vs_naive"] == pytest.approx(1.0)
    # AND /metrics/{symbol}'s file holds the same figures, with a series over time whose last
    # point is the last 20 sessions' figure
    symbol_file = result["live"][VERSION]
    assert symbol_file["models"]["ensemble"]["per_symbol"][SYMBOL]["by_horizon"]["1"][
        "rmse_ratio_vs_naive"
    ] == pytest.approx(expected["ensemble"][1]["rmse_ratio_vs_naive"])
    series = symbol_file["series"][SYMBOL]["ensemble"]["1"]
    assert len(series["dates"]) == SESSIONS - 1 - SERIES + 1
    realised = sorted(served["as_of"].unique())[:-1]
    assert series["dates"][-1] == realised[-1].date().isoformat()
    last20 = served[served["as_of"].isin(realised[-SERIES:])]
    recent = oracle(serving_bundle, last20, SERIES)["ensemble"][1]
    assert series["rmse_ratio_vs_naive"][-1] == pytest.approx(recent["rmse_ratio_vs_naive"])
    assert series["interval_coverage"][-1] == pytest.approx(recent["interval_coverage"])


def listing(settings: Settings) -> dict[str, str]:
    s3 = boto3.client("s3", endpoint_url=settings.store.endpoint_url, region_name="us-east-1")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=settings.store.bucket)
    return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}


def test_a_rerun_on_the_same_day_changes_nothing(
    replayed: Settings, serving_bundle: BuiltBundle
) -> None:
    # GIVEN a first run, which compacted the log and published its results
    first = monitor(replayed, last_day(serving_bundle))
    assert first["compaction"]["parts_written"] == SESSIONS and first["written"]
    before = listing(replayed)
    # WHEN the monitor runs again for the same day
    again = monitor(replayed, last_day(serving_bundle))
    # THEN nothing is written, deleted or compacted, and it reports the same status
    assert again["written"] == [] and again["compaction"]["parts_written"] == 0
    assert listing(replayed) == before
    assert again["status"] == first["status"]


def test_a_retraining_is_triggered_once_a_day(
    replayed: Settings, serving_bundle: BuiltBundle
) -> None:
    # GIVEN the test bundle, whose live error is far above the better baseline's (the tiny
    # models of utils.serving_bundle), and monitors racing for the same day
    trigger = Trigger()
    day = last_day(serving_bundle)
    runs = [
        threading.Thread(target=monitor, args=(replayed, day), kwargs={"trigger": trigger})
        for _ in range(2)
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    # WHEN it runs once more that day
    result = monitor(replayed, day, trigger=trigger)
    # THEN the training job was started once, for the bundle's symbols, saying why
    assert len(trigger.calls) == 1
    symbols, reasons = trigger.calls[0]
    assert symbols == ["MSFT", "^GSPC"] and reasons[0].startswith("error: ")
    retrain = result["status"]["retrain"]
    assert retrain["retrain"] and retrain["trigger"]["state"] == "triggered"
    assert retrain["trigger"]["result"] == {"kind": "test", "job_id": "job-1"}
    error = next(c for c in retrain["checks"] if c["name"] == "error")
    assert error["state"] == "retrain" and error["value"] > 1.1 and error["sessions"] == WINDOW


def test_a_failed_trigger_is_withdrawn_and_retried(
    replayed: Settings, serving_bundle: BuiltBundle
) -> None:
    day = last_day(serving_bundle)
    store = Store.from_settings(replayed.store)
    # GIVEN a trigger that fails: the run fails loudly and leaves no claim
    with pytest.raises(RuntimeError, match="Batch refused"):
        monitor(replayed, day, trigger=Trigger(fail=True))
    assert not store.list_keys(retrain_key(replayed.store.monitoring_prefix, day))
    # WHEN the run is retried THEN it triggers
    trigger = Trigger()
    monitor(replayed, day, trigger=trigger)
    assert len(trigger.calls) == 1
    # AND a run two days later is in the cooldown: nothing more starts
    later = monitor(replayed, day + timedelta(days=3), trigger=trigger)
    assert later["status"]["retrain"]["trigger"] == {
        "state": "cooldown",
        "last_trigger": day.isoformat(),
        "cooldown_days": 7,
    }
    assert len(trigger.calls) == 1


def shift_recent_features(settings: Settings, built: BuiltBundle, sessions: int) -> None:
    """Move every feature of the bundle's symbols' last ``sessions`` sessions (to the replay's
    end) by two training standard deviations: an injected drift."""
    store = Store.from_settings(settings.store)
    end = pd.Timestamp(last_day(built))
    frame = store.read_table(settings.store.features_prefix, ["MSFT", "^GSPC"], end=end)
    recent = frame.groupby("symbol", group_keys=False).tail(sessions).copy()
    for name in tracked_features(built):
        recent[name] = recent[name] + 2.0 * frame[name].std()
    store.upsert_table(settings.store.features_prefix, recent)


def tracked_features(built: BuiltBundle) -> list[str]:
    from stockml.bundle import read_bundle_dir

    distribution = read_bundle_dir(built.folder).distribution
    assert distribution is not None
    return list(distribution.features)


@pytest.fixture
def drift_only(replayed: Settings) -> Settings:
    """Thresholds only a drift can pass (the tiny test models' error would trigger too)."""
    retrain = replayed.monitoring.retrain
    retrain.max_rmse_ratio, retrain.min_coverage, retrain.max_coverage = 100.0, 0.0, 1.0
    return replayed


def test_an_injected_drift_triggers_and_no_drift_does_not(
    drift_only: Settings, serving_bundle: BuiltBundle
) -> None:
    day = last_day(serving_bundle)
    trigger = Trigger()
    # GIVEN the real features: no drift, no retraining
    calm = monitor(drift_only, day, trigger=trigger)
    drift = calm["status"]["drift"]
    assert drift["drift"] is False and drift["window"]["sessions"] == 60
    assert calm["status"]["retrain"]["retrain"] is False and trigger.calls == []
    # WHEN the last 60 sessions' features drift
    shift_recent_features(drift_only, serving_bundle, 60)
    drifted = monitor(drift_only, day, trigger=trigger)
    # THEN the drift is reported feature by feature and starts one training job
    report = drifted["status"]["drift"]
    assert report["drift"] is True and report["drifted_share"] > 0.8
    assert len(trigger.calls) == 1 and trigger.calls[0][1][0].startswith("drift: ")


def test_a_stale_feed_is_reported(replayed: Settings, serving_bundle: BuiltBundle) -> None:
    day = last_day(serving_bundle)
    # GIVEN MSFT's bars end on the replay's last day: fresh as of that day
    fresh = monitor(replayed, day)["status"]["freshness"]
    assert fresh["symbols"]["MSFT"] == {
        "last_date": day.isoformat(),
        "age_sessions": 0,
        "stale": False,
    }
    # WHEN the monitor runs ten NYSE sessions later (13-17, 20-22, 24 and 27 November 2017:
    # Thanksgiving is a holiday) without new bars for MSFT
    later = date(2017, 11, 27)
    status = monitor(replayed, later)["status"]["freshness"]
    # THEN MSFT is reported stale by ten sessions (^GSPC's bars run on into 2018)
    assert status["expected_session"] == later.isoformat()
    assert status["stale"] == ["MSFT"] and status["symbols"]["MSFT"]["age_sessions"] == 10
    assert status["symbols"]["^GSPC"]["stale"] is False
    assert status["fresh"] is False
