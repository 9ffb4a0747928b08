"""MLflow unreachable around a training: a clear error, no bundle published, nothing promoted.

The tracking URI is a proxy (tests/utils/faulty_proxy.py) in front of the session's real MLflow
server. MLflow's client is told not to retry and to wait 3 s for an answer
(``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``MLFLOW_HTTP_REQUEST_TIMEOUT``, read at each request),
so a dead server fails a request in seconds rather than minutes.
"""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from stockml.errors import TrackingError
from stockml.local import LocalServer, free_port
from stockml.model_config import ModelConfig
from stockml.orchestration import run_training
from stockml.settings import Settings
from stockml.storage import Store
from stockml.tracking import CHAMPION, PROMOTION_TAG
from utils.faulty_proxy import FaultyProxy
from utils.sample_data import sample_bars
from utils.training_data import tiny_config

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _impatient_mlflow_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")


def _settings(settings: Settings) -> Settings:
    # an experiment and a registered model of this test's own
    name = f"faults-{uuid.uuid4().hex[:8]}"
    settings.mlflow.experiment = settings.mlflow.registered_model = name
    return settings


def test_an_unreachable_mlflow_fails_the_job_before_it_reads_or_trains(
    settings: Settings,
) -> None:
    # GIVEN a tracking URI where nothing listens, and a store without bars (reading them
    # would fail the job with another error)
    uri = f"http://127.0.0.1:{free_port()}"

    # WHEN the training job starts
    with pytest.raises(TrackingError, match=f"MLflow at {uri} does not answer"):
        run_training(_settings(settings), ["MSFT"], tiny_config(), tracking_uri=uri)

    # THEN it failed first thing, and published nothing
    assert Store.from_settings(settings.store).list_keys("") == []


@pytest.mark.slow
def test_mlflow_stopping_mid_run_publishes_no_bundle_and_promotes_nothing(
    settings: Settings, mlflow_server: LocalServer, tmp_path: Path
) -> None:
    # GIVEN MSFT and its market in the store, a model configuration whose gate lets any
    # candidate through, and an MLflow that stops answering when the run is logged and the
    # registry is about to get its model version
    store = Store.from_settings(settings.store)
    store.upsert_bars(sample_bars("MSFT", "^GSPC", "^IXIC", "^VIX", start=date(2015, 11, 1)))
    config = ModelConfig.model_validate(
        {
            **tiny_config().model_dump(),
            "models": ["xgboost", "lightgbm"],
            "history_sessions": 300,
            "promotion": {
                "max_dm_pvalue": 1.01,
                "min_test_sessions": 1,
                "min_folds": 1,
                "min_folds_beating_baselines": 0,
                "require_sharpe_vs_buy_and_hold": False,
                "coverage_range": (0.0, 1.0),
                "parity_tolerance": 1.0,
            },
        }
    )
    down = False

    def dies_at_the_registry(n: int, method: str, path: str) -> str | None:
        nonlocal down
        down = down or "/model-versions/create" in path
        return "hang" if down else None

    proxy = FaultyProxy(mlflow_server.url, dies_at_the_registry)  # type: ignore[arg-type]
    settings = _settings(settings)

    # WHEN the training job runs
    with proxy.running(), pytest.raises(TrackingError) as failure:
        run_training(
            settings, ["MSFT"], config, tracking_uri=proxy.url, workdir=tmp_path, log_models=False
        )

    # THEN the error says what happened and that nothing was published ...
    message = str(failure.value)
    assert f"MLflow at {proxy.url} failed while logging bundle" in message
    assert "Nothing was published" in message
    assert proxy.faults(), "MLflow never stopped answering"
    # ... the store holds no bundle and no champion pointer ...
    assert store.list_keys(store.models_prefix + "/") == []
    # ... although the gate promoted the candidate (its run, logged before MLflow stopped,
    # says so), the registry has no champion ...
    client = MlflowClient(mlflow_server.url)
    experiment = client.get_experiment_by_name(settings.mlflow.experiment)
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.tags[PROMOTION_TAG] == "promoted"
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias(settings.mlflow.registered_model, CHAMPION)
    # ... and no MLflow run is left active in the process
    assert mlflow.active_run() is None
