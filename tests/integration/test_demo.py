"""The README's main job end to end: ingest -> features -> train -> serve -> a served prediction."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from mlflow import MlflowClient
from rich.console import Console

from stockml import calendar
from stockml.demo import run_demo
from stockml.local import LocalServer
from stockml.settings import Settings
from stockml.storage import Store
from utils.training_data import tiny_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_ends_with_a_served_prediction(settings: Settings, mlflow_server: LocalServer) -> None:
    # GIVEN an empty bucket, the embedded sample provider and a real MLflow server
    settings.ingest.providers = ["sample"]
    settings.mlflow.tracking_uri = mlflow_server.url
    settings.mlflow.experiment = "demo-test"
    settings.mlflow.registered_model = "stockml-demo-test"
    out = io.StringIO()

    # WHEN the whole pipeline runs (a tiny model configuration keeps it short)
    body = run_demo(
        settings, Console(file=out, width=120), symbol="MSFT", days=3, model_config=tiny_config()
    )

    # THEN the API served a prediction for every model and the ensemble, from the stored data
    store = Store.from_settings(settings.store)
    last = store.read_bars(["MSFT"]).iloc[-1]
    assert body["symbol"] == "MSFT"
    assert body["last_date"] == str(last["date"].date()) == "2017-11-10"
    assert body["last_close"] == pytest.approx(last["close"])
    assert {"lstm", "xgboost", "lightgbm", "ensemble"} <= set(body["predictions"])
    expected_dates = [str(d.date()) for d in calendar.next_sessions(pd.Timestamp("2017-11-10"), 3)]
    assert body["dates"] == expected_dates
    for closes in body["predictions"].values():
        assert len(closes) == 3 and all(
            0.5 * last["close"] < c < 1.5 * last["close"] for c in closes
        )
    # AND the run and the registered version are visible in MLflow, with the bundle in the store
    client = MlflowClient(mlflow_server.url)
    versions = client.search_model_versions("name='stockml-demo-test'")
    assert len(versions) == 1
    assert store.list_keys(f"{settings.store.models_prefix}/{body['model_version']}/")
    assert "6/6 POST /predict/MSFT" in out.getvalue()
    # AND the monitor scored the forecasts served on the sessions after the training cut
    status = json.loads(store.get_bytes(f"{settings.store.monitoring_prefix}/status.json"))
    assert status["run_date"] == "2017-11-10"
    assert status["monitored_version"] == body["model_version"]
    live = status["live"][body["model_version"]]
    assert live["window"]["sessions"] == 60 and live["window"]["to"] == "2017-11-09"
    assert live["models"]["ensemble"]["1"]["n"] == 60
    assert "4/6 the next 60 sessions arrive" in out.getvalue()
    # AND it ended by printing both servers' URLs (the dashboard answered its health check)
    tail = out.getvalue().split("ready", 1)[1]
    assert "API:       http://127.0.0.1:" in tail and "dashboard: http://127.0.0.1:" in tail
