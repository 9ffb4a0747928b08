"""The training job and the CLI on a real store: bars in moto_server -> features -> bundle.

Runs the container's entry point (``training/job.py``) on the CPU in a fresh process, exactly
as the GPU image would, and ``stockml evaluate --json`` in-process.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from stockml.bundle import read_bundle_files
from stockml.providers.sample import SampleProvider
from stockml.settings import StoreSettings
from stockml.storage import Store
from utils.store_rows import write_csv

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
TINY_MODELS = {
    "seed": 5,
    "window": 10,
    "history_sessions": 300,
    "device": "cpu",
    "n_threads": 1,
    "models": ["lstm", "xgboost", "lightgbm"],
    "lstm": {"hidden_size": 8, "num_layers": 1, "max_epochs": 2, "patience": 2, "batch_size": 64},
    "xgboost": {"n_estimators": 20, "max_depth": 3, "early_stopping_rounds": 5},
    "lightgbm": {
        "n_estimators": 20,
        "num_leaves": 7,
        "min_data_in_leaf": 10,
        "early_stopping_rounds": 5,
    },
    "evaluation": {
        "n_folds": 2,
        "test_fraction": 0.3,
        "val_fraction": 0.2,
        "calibration_fraction": 0.2,
        "cost_bps": 5,
    },
}


def store_bars(store: Store, start: str, end: str) -> None:
    """MSFT and its market context from the embedded sample, ``start``..``end``, into the store."""
    sample = SampleProvider()
    for symbol in ["MSFT", "^GSPC", "^IXIC", "^VIX"]:
        bars = sample.fetch_bars(symbol, pd.Timestamp(start).date(), pd.Timestamp(end).date())
        store.upsert_bars(bars)


@pytest.fixture
def job_env(store_settings: StoreSettings, tmp_path: Path) -> dict[str, str]:
    """A store holding ~2 years of MSFT and its market context, and a tiny model config."""
    store_bars(Store.from_settings(store_settings), "2015-11-01", "2017-11-10")
    _write_configs(tmp_path)
    return _env(store_settings, tmp_path)


def _write_configs(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    for name in ("config.yaml", "feature_config.yaml"):
        shutil.copy(REPO / "configs" / name, configs / name)
    (configs / "model_config.yaml").write_text(yaml.safe_dump(TINY_MODELS))


def _env(store_settings: StoreSettings, tmp_path: Path) -> dict[str, str]:
    return {
        "STOCKML_CONFIG_DIR": str(tmp_path / "configs"),
        "STOCKML_STORE__ENDPOINT_URL": str(store_settings.endpoint_url),
        "STOCKML_STORE__BUCKET": store_settings.bucket,
    }


def test_job_entry_point_trains_and_publishes_a_bundle_on_cpu(
    job_env: dict[str, str], store_settings: StoreSettings
):
    # GIVEN bars in the store and the container's entry point
    # WHEN the job runs in a fresh process on the CPU, without MLflow
    done = subprocess.run(
        [sys.executable, str(REPO / "training" / "job.py"), "--symbols", "MSFT", "--no-mlflow"],
        env={**os.environ, **job_env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    # THEN it succeeds and the bundle it names is in the store, complete and verified
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    store = Store.from_settings(store_settings)
    bundle = read_bundle_files(store.get_folder(f"models/{summary['version']}"))
    assert sorted(bundle.onnx) == ["ensemble", "lightgbm", "lstm", "xgboost"]
    assert bundle.feature_spec.feature_config["horizon"] == bundle.manifest.horizon == 5
    assert bundle.manifest.symbols == ["MSFT"]
    # trained on the most recent `history_sessions` sessions only, ending at the last bar
    assert summary["data_window"]["rows"] == 300
    assert summary["data_window"]["end"] == "2017-11-10"
    # the champion pointer exists exactly when the gate promoted the bundle, and the gate's
    # verdict is every check's (the default thresholds ask for 500 test sessions: refused)
    has_champion = "models/champion.json" in store.list_keys("models/")
    assert has_champion == summary["promoted"] is False
    failed = [c["name"] for c in summary["gate_checks"] if not c["passed"]]
    assert "test_sessions" in failed and summary["gate"].startswith("refused: ")
    metrics = bundle.metrics
    assert (
        metrics["gate"]["passed"] is False and metrics["gate"]["checks"] == summary["gate_checks"]
    )


def test_cli_evaluate_prints_the_json_report(
    job_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
):
    from stockml.cli import app

    # GIVEN the same store, through the environment
    for key, value in job_env.items():
        monkeypatch.setenv(key, value)

    # WHEN `stockml evaluate --symbols MSFT --json` runs
    result = CliRunner().invoke(app, ["evaluate", "--symbols", "MSFT", "--json"])

    # THEN it prints strict JSON with every model and both baselines, pooled and per symbol
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["symbols"] == ["MSFT"] and report["horizon"] == 5
    for name in ("lstm", "xgboost", "lightgbm", "ensemble", "naive", "drift"):
        pooled = report["models"][name]["pooled"]
        assert {
            "rmse_ratio_vs_naive",
            "directional_accuracy",
            "directional_accuracy_always_long",
            "directional_pvalue",
            "dm_pvalue_vs_best_baseline",
            "interval_coverage",
            "ic",
            "n",
        } <= set(pooled)
        assert report["models"][name]["per_symbol"]["MSFT"]["n"] == pooled["n"] > 0
    assert report["models"]["naive"]["pooled"]["rmse_ratio_vs_naive"] == 1.0
    # AND the gate object, consistent with the figures it reads
    gate = report["gate"]
    checks = {c["name"]: c for c in gate["checks"]}
    ensemble = report["models"]["ensemble"]["pooled"]
    assert (
        checks["dm_pvalue_vs_best_baseline_h1"]["value"] == ensemble["dm_pvalue_vs_best_baseline"]
    )
    assert checks["interval_coverage_h1"]["value"] == ensemble["interval_coverage"]
    assert gate["passed"] == all(c["passed"] for c in gate["checks"])
    assert checks["onnx_parity_max_abs"]["passed"]


def test_any_symbol_ingested_from_csv_can_be_evaluated_and_trained(
    job_env: dict[str, str],
    store_settings: StoreSettings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
):
    from stockml.cli import app

    # GIVEN a Yahoo-style CSV of a symbol the sample provider does not know
    # (the embedded MSFT bars of 2015-2017, renamed ACME)
    bars = SampleProvider().fetch_bars(
        "MSFT", pd.Timestamp("2015-11-01").date(), pd.Timestamp("2017-11-10").date()
    )
    folder = tmp_path / "csv"
    write_csv(folder, {"ACME": bars})
    for key, value in job_env.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()

    # WHEN it is ingested with the csv provider, then evaluated and trained by name
    ingested = runner.invoke(app, ["ingest", "--path", str(folder), "--symbols", "ACME"])
    evaluated = runner.invoke(app, ["evaluate", "--symbols", "ACME", "--json"])
    trained = runner.invoke(app, ["train", "--symbols", "ACME", "--no-mlflow", "--json"])

    # THEN every step succeeds on that symbol and the bundle names it
    assert ingested.exit_code == 0, ingested.output
    assert len(Store.from_settings(store_settings).read_bars(["ACME"])) == len(bars)
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    assert report["symbols"] == ["ACME"]
    assert report["models"]["ensemble"]["per_symbol"]["ACME"]["n"] > 0
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.stdout)
    assert summary["symbols"] == ["ACME"]
    bundle = read_bundle_files(
        Store.from_settings(store_settings).get_folder(f"models/{summary['version']}")
    )
    assert bundle.manifest.symbols == ["ACME"]


def test_evaluate_bundle_forward_tests_a_published_bundle_after_its_training_end(
    store_settings: StoreSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from stockml.bundle import champion_key, champion_pointer, predictions_key
    from stockml.cli import app
    from stockml.features import FeatureConfig
    from stockml.forward import bundle_forecasts
    from stockml.inference import Predictor, load_bundle
    from stockml.orchestration import load_dataset
    from stockml.window import FeatureWindow

    # GIVEN a bundle trained on bars up to 2017-06-30, then the bars of the months after it
    store = Store.from_settings(store_settings)
    store_bars(store, "2015-06-01", "2017-06-30")
    _write_configs(tmp_path)
    for key, value in _env(store_settings, tmp_path).items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "--symbols", "MSFT", "--no-mlflow", "--json"])
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.stdout)
    version, train_end = summary["version"], summary["data_window"]["train_end"]
    assert train_end < "2017-06-30"
    store_bars(store, "2017-07-01", "2017-11-10")

    # WHEN it is forward-tested from a date inside its training window
    inside = runner.invoke(
        app, ["evaluate", "--bundle", version, "--from", train_end, "--symbols", "MSFT", "--json"]
    )
    # THEN it refuses, naming the window
    assert inside.exit_code == 2
    assert f"up to {train_end}" in inside.output

    # WHEN it is forward-tested on the sessions after it
    result = runner.invoke(app, ["evaluate", "--bundle", version, "--from", "2017-07-05", "--json"])

    # THEN every model and both baselines are scored on exactly the labelled sessions from
    # 2017-07-05 on (the last 5 sessions have no 5-session outcome yet), with coverage
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    sessions = pd.DatetimeIndex(
        store.read_bars(["MSFT"]).query("date >= '2017-07-05'")["date"]
    ).sort_values()
    assert report["bundle"] == version and report["train_end"] == train_end
    assert report["from"] == "2017-07-05" and report["to"] == str(sessions[-6].date())
    assert report["n_sessions"] == len(sessions) - 5
    for name in ("lstm", "xgboost", "lightgbm", "ensemble", "naive", "drift"):
        pooled = report["models"][name]["pooled"]
        assert pooled["n"] == len(sessions) - 5
        assert 0.0 <= pooled["interval_coverage"] <= 1.0
        assert "dm_pvalue_vs_best_baseline" in pooled
    # AND the forecasts scored are the API's own: the served ensemble for one of those days
    bundle = load_bundle(store, version)
    data = load_dataset(
        store, ["MSFT"], FeatureConfig.model_validate(bundle.feature_spec.feature_config)
    )
    day = sessions[20]
    forecasts = bundle_forecasts(bundle, data.frame, day, day)
    rows = data.frame[data.frame["date"] <= day]
    served = Predictor(bundle).log_returns(
        FeatureWindow.from_frame(rows, bundle.feature_spec.feature_names), ["ensemble"]
    )
    np.testing.assert_allclose(forecasts.predictions["ensemble"][0], served["ensemble"], atol=1e-6)

    # WHEN that bundle is the champion and a new walk-forward evaluation runs
    store.put_bytes(champion_key("models"), champion_pointer(version, "promoted"))
    evaluated = runner.invoke(app, ["evaluate", "--symbols", "MSFT", "--json"])

    # THEN the gate compares the challenger with it on the sessions where both forecast out of
    # sample: the champion's stored walk-forward sessions and every labelled one after its
    # training end, within the challenger's test blocks
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    days = pd.DatetimeIndex(store.read_bars(["MSFT"])["date"]).sort_values()
    tested = pd.DatetimeIndex(
        [
            d
            for fold in report["folds"]
            for d in days
            if fold["test"][0] <= str(d.date()) <= fold["test"][1]
        ]
    )
    stored = pd.read_parquet(io.BytesIO(store.get_bytes(predictions_key("models", version))))
    labelled_later = days[days > pd.Timestamp(train_end)][:-5]
    champion_days = pd.DatetimeIndex(stored["date"].unique()).union(labelled_later)
    shared = len(tested.intersection(champion_days))
    check = next(c for c in report["gate"]["checks"] if c["name"].startswith("champion_"))
    assert shared >= 20 and f"champion {version} on {shared} shared sessions" in check["rule"]
    assert check["value"] is not None and check["passed"] == (check["value"] >= 0.05)
