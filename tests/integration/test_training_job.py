"""The training job and the CLI on a real store: bars in moto_server -> features -> bundle.

Runs the container's entry point (``training/job.py``) on the CPU in a fresh process, exactly
as the GPU image would, and ``stockml evaluate --json`` in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from stockml.bundle import read_bundle_files
from stockml.providers.sample import SampleProvider
from stockml.settings import StoreSettings
from stockml.storage import Store

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
    "evaluation": {"n_folds": 2, "test_fraction": 0.3, "val_fraction": 0.2, "cost_bps": 5},
}


@pytest.fixture
def job_env(store_settings: StoreSettings, tmp_path: Path) -> dict[str, str]:
    """A store holding ~2 years of MSFT and its market context, and a tiny model config."""
    store = Store.from_settings(store_settings)
    sample = SampleProvider()
    for symbol in ["MSFT", "^GSPC", "^IXIC", "^VIX"]:
        bars = sample.fetch_bars(
            symbol, pd.Timestamp("2015-11-01").date(), pd.Timestamp("2017-11-10").date()
        )
        store.upsert_bars(bars)
    configs = tmp_path / "configs"
    configs.mkdir()
    for name in ("config.yaml", "feature_config.yaml"):
        shutil.copy(REPO / "configs" / name, configs / name)
    (configs / "model_config.yaml").write_text(yaml.safe_dump(TINY_MODELS))
    return {
        "STOCKML_CONFIG_DIR": str(configs),
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
    assert sorted(bundle.onnx) == ["lightgbm", "lstm", "xgboost"]
    assert bundle.feature_spec.feature_config["horizon"] == bundle.manifest.horizon == 5
    assert bundle.manifest.symbols == ["MSFT"]
    # trained on the most recent `history_sessions` sessions only, ending at the last bar
    assert summary["data_window"]["rows"] == 300
    assert summary["data_window"]["end"] == "2017-11-10"
    # the champion pointer exists exactly when the gate promoted the bundle
    has_champion = "models/champion.json" in store.list_keys("models/")
    assert has_champion == summary["promoted"]
    assert summary["gate"] == ("promoted" if summary["promoted"] else summary["gate"])


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
            "directional_pvalue",
            "ic",
            "n",
        } <= set(pooled)
        assert report["models"][name]["per_symbol"]["MSFT"]["n"] == pooled["n"] > 0
    assert report["models"]["naive"]["pooled"]["rmse_ratio_vs_naive"] == 1.0


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
    folder.mkdir()
    bars.rename(
        columns={
            "date": "Date",
            "open": "Open",
            "high": "High",
            "low": "Low",
            "close": "Close",
            "adj_close": "Adj Close",
            "volume": "Volume",
        }
    )[["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"]].to_csv(
        folder / "ACME.csv", index=False
    )
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
