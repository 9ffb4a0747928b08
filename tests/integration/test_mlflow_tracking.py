"""MLflow end to end: a real tracking server (SQLite backend, one worker), runs, registry aliases."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from stockml.local import LocalServer
from stockml.tracking import CHALLENGER, CHAMPION, GATE_TAG_PREFIX, PROMOTION_TAG, log_training
from stockml.train import train
from utils.training_data import make_dataset, tiny_config, with_leak

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_runs_registry_and_aliases_through_the_client(mlflow_server: LocalServer, tmp_path: Path):
    # GIVEN a candidate without an edge (real MSFT returns) and one with it (a leak; the
    # backtest trades at the signal's close to profit from it)
    data = make_dataset(("MSFT",), rows=400)
    config = tiny_config(
        models=["lstm", "xgboost"],
        evaluation={**tiny_config().evaluation.model_dump(), "execution_lag": 0},
    )
    loser = train(data, config, tmp_path)
    winner = train(with_leak(data, noise=0.003), config, tmp_path)
    assert not loser.gate.passed and winner.gate.passed, winner.gate.summary

    # WHEN both are logged (the first with every model, native and ONNX) and registered
    first = log_training(
        loser,
        config,
        mlflow_server.url,
        "test-exp",
        "stockml-test",
        [CONFIGS / "model_config.yaml"],
    )
    second = log_training(
        winner, config, mlflow_server.url, "test-exp", "stockml-test", log_models=False
    )

    # THEN the client sees each run with params, metrics, tags and artifacts
    client = MlflowClient(mlflow_server.url)
    run = client.get_run(first.run_id)
    assert run.data.params["window"] == "10" and run.data.params["lstm.hidden_size"] == "8"
    assert run.data.tags["bundle_version"] == loser.version
    assert run.data.tags["git_commit"] == loser.git_commit
    assert run.data.tags[PROMOTION_TAG] == loser.gate.summary
    assert run.data.tags[PROMOTION_TAG].startswith("refused: ")
    # every gate check is a tag with its verdict, value and threshold
    for check in loser.gate.checks:
        tag = run.data.tags[GATE_TAG_PREFIX + check.name]
        assert tag.startswith("passed" if check.passed else "FAILED")
        threshold = check.threshold
        shown = f"{threshold:.6g}" if isinstance(threshold, float) else str(threshold)
        assert f"threshold {shown}" in tag
    pooled = loser.walk_forward.metrics["ensemble"]["pooled"]
    assert run.data.metrics["wf_ensemble_rmse_ratio_vs_naive"] == pytest.approx(
        pooled["rmse_ratio_vs_naive"]
    )
    assert run.data.metrics["wf_ensemble_interval_coverage"] == pytest.approx(
        pooled["interval_coverage"]
    )
    # in-sample validation figures say so in their names
    assert "insample_val_ensemble_rmse" in run.data.metrics
    assert not any(k.startswith("val_") for k in run.data.metrics)
    assert "parity_ensemble_max_abs" in run.data.metrics
    assert [m.step for m in client.get_metric_history(first.run_id, "fold_rmse_ratio_xgboost")] == [
        0,
        1,
    ]
    artifacts = {a.path for a in client.list_artifacts(first.run_id)}
    assert {"bundle", "plots", "configs", "evaluation"} <= artifacts
    plots = {a.path for a in client.list_artifacts(first.run_id, "plots")}
    assert {
        "plots/predictions_vs_actual.png",
        "plots/backtest_equity.png",
        "plots/feature_importance_xgboost.png",
    } <= plots
    bundle_files = {a.path for a in client.list_artifacts(first.run_id, "bundle")}
    assert {
        "bundle/manifest.json",
        "bundle/lstm.onnx",
        "bundle/xgboost.onnx",
        "bundle/ensemble.onnx",
    } <= bundle_files
    evaluation_files = {a.path for a in client.list_artifacts(first.run_id, "evaluation")}
    assert "evaluation/gate.json" in evaluation_files
    # every model logged as ONNX (the ensemble like the others), natively where MLflow can
    logged = {m.name: m for m in client.search_logged_models(experiment_ids=[first.experiment_id])}
    assert {
        "lstm",
        "xgboost_h1",
        "xgboost_h3",
        "lstm_onnx",
        "xgboost_onnx",
        "ensemble_onnx",
    } <= set(logged)
    assert logged["lstm_onnx"].source_run_id == first.run_id

    # AND the registry: the loser is only challenger, the winner is champion and challenger
    assert first.aliases == [CHALLENGER] and second.aliases == [CHALLENGER, CHAMPION]
    champion = client.get_model_version_by_alias("stockml-test", CHAMPION)
    challenger = client.get_model_version_by_alias("stockml-test", CHALLENGER)
    assert champion.version == challenger.version == second.model_version
    assert champion.run_id == second.run_id
    assert champion.tags["bundle_version"] == winner.version
    refused = client.get_model_version("stockml-test", first.model_version)
    assert refused.tags[PROMOTION_TAG] == loser.gate.summary
    assert refused.tags[GATE_TAG_PREFIX + "dm_pvalue_vs_best_baseline_h1"].startswith("FAILED")
    assert not refused.aliases
