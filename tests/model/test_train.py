"""Training end to end on small real data: walk-forward, the bundle, the gate, publishing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from stockml.bundle import read_bundle_dir
from stockml.models.onnx_utils import run_onnx
from stockml.train import (
    ENSEMBLE,
    Dataset,
    PromotionConfig,
    clean_frame,
    promotion_gate,
    publish_bundle,
    train,
    walk_forward,
)
from utils.training_data import tiny_config, with_leak

MODELS = ["lstm", "xgboost", "lightgbm"]
REQUIRED = ["rmse_ratio_vs_naive", "directional_accuracy", "directional_pvalue", "ic", "n"]


@pytest.fixture(scope="module")
def trained(two_symbol_data: Dataset, tmp_path_factory: pytest.TempPathFactory):
    return train(two_symbol_data, tiny_config(), tmp_path_factory.mktemp("bundles"))


def test_bundle_holds_every_model_its_spec_and_verifies(trained, two_symbol_data: Dataset):
    # GIVEN a training run on MSFT and ^GSPC
    # WHEN its bundle folder is read back with the serving reader (sha256-checked)
    bundle = read_bundle_dir(trained.bundle_dir)

    # THEN it holds the three ONNX models with their input kinds, weights and bands
    manifest = bundle.manifest
    assert sorted(manifest.models) == sorted(MODELS)
    assert manifest.models["lstm"].kind == "sequence"
    assert manifest.models["xgboost"].kind == manifest.models["lightgbm"].kind == "tabular"
    assert sum(manifest.ensemble_weights.values()) == pytest.approx(1.0)
    assert set(manifest.intervals) == {*MODELS, ENSEMBLE}
    for band in manifest.intervals.values():
        assert band["level"] == 0.9
        assert all(lo < hi for lo, hi in zip(band["lo"], band["hi"], strict=True))
    assert manifest.symbols == ["MSFT", "^GSPC"]
    # and the FeatureSpec carries the feature config, names, window and horizon
    spec = bundle.feature_spec
    assert spec.feature_config == two_symbol_data.feature_config
    assert spec.feature_names == two_symbol_data.feature_names
    assert (spec.window, spec.horizon) == (10, 3)


def test_scaler_is_fitted_on_the_training_window_only(trained, two_symbol_data: Dataset):
    # GIVEN the final fit's training window (it ends before the validation slice)
    fit_end = pd.Timestamp(trained.data_window["fit_end"])
    frame = clean_frame(
        two_symbol_data.frame, two_symbol_data.feature_names, two_symbol_data.target_names
    )

    # WHEN the stored scaler is compared with statistics computed independently
    train_rows = frame[frame["date"] <= fit_end][two_symbol_data.feature_names]
    all_rows = frame[two_symbol_data.feature_names]

    # THEN it equals the training window's mean, not the whole history's
    np.testing.assert_allclose(trained.fitted.spec.mean, train_rows.mean().to_numpy(), rtol=1e-9)
    assert not np.allclose(trained.fitted.spec.mean, all_rows.mean().to_numpy(), rtol=1e-6)


def test_bundle_onnx_files_reproduce_native_predictions(trained):
    # GIVEN the ONNX bytes stored in the bundle and the validation rows of the final fit
    bundle = read_bundle_dir(trained.bundle_dir)
    val = trained.fitted.val

    # WHEN each is run on the validation rows (a batch) and on one row
    for name, model in trained.fitted.models.items():
        x = val.x(model)
        native = model.predict(x)
        # THEN it matches its native twin; the parity record says the same
        assert np.abs(run_onnx(bundle.onnx[name], x) - native).max() <= 1e-4
        assert np.abs(run_onnx(bundle.onnx[name], x[:1]) - native[:1]).max() <= 1e-4
        assert trained.parity[name]["batch_shape"] == [len(x), 3]
        assert trained.parity[name]["max_abs"] <= 1e-4


def test_metrics_hold_models_and_baselines_pooled_and_per_symbol(trained):
    # GIVEN the bundle's metrics.json
    metrics = json.loads((trained.bundle_dir / "metrics.json").read_text())
    report = metrics["walk_forward"]["models"]

    # THEN every model, the ensemble and both baselines are scored, pooled and per symbol
    for name in [*MODELS, ENSEMBLE, "naive", "drift"]:
        for block in [report[name]["pooled"], *report[name]["per_symbol"].values()]:
            assert all(key in block for key in REQUIRED)
            assert block["n"] > 0
            assert set(block["backtest"]) >= {"strategy", "buy_and_hold", "cost_bps"}
        assert sorted(report[name]["per_symbol"]) == ["MSFT", "^GSPC"]
        assert (
            metrics["pooled"][name]["rmse_ratio_vs_naive"]
            == report[name]["pooled"]["rmse_ratio_vs_naive"]
        )
    # the naive baseline is the yardstick: ratio 1, no direction, no DM test against itself
    naive = report["naive"]["pooled"]
    assert naive["rmse_ratio_vs_naive"] == pytest.approx(1.0)
    assert naive["directional_accuracy"] is None and naive["dm_pvalue"] is None
    # pooled n counts both symbols' test rows
    assert report[ENSEMBLE]["pooled"]["n"] == sum(
        b["n"] for b in report[ENSEMBLE]["per_symbol"].values()
    )


def test_walk_forward_purges_h_sessions_and_never_tests_on_training_days(two_symbol_data: Dataset):
    # GIVEN the walk-forward folds of the tiny configuration
    config = tiny_config()
    wf = walk_forward(two_symbol_data, config)

    # THEN each fold's fit and validation end at least H sessions before its test block starts
    days = pd.DatetimeIndex(np.unique(two_symbol_data.frame["date"]))
    for fold in wf.folds:
        test_start = days.get_loc(pd.Timestamp(fold["test"][0]))
        assert test_start - days.get_loc(pd.Timestamp(fold["val"][1])) > two_symbol_data.horizon
        assert (
            days.get_loc(pd.Timestamp(fold["val"][0])) - days.get_loc(pd.Timestamp(fold["fit"][1]))
            > two_symbol_data.horizon
        )
    # and the test blocks follow each other without overlap (expanding window)
    for earlier, later in zip(wf.folds, wf.folds[1:], strict=False):
        assert pd.Timestamp(earlier["test"][1]) < pd.Timestamp(later["test"][0])
        assert pd.Timestamp(later["fit"][1]) > pd.Timestamp(earlier["fit"][1])


def test_gate_refuses_a_model_that_loses_to_naive(two_symbol_data: Dataset, tmp_path):
    # GIVEN a feature that tells the future return until the test period, then its opposite:
    # the models learn to follow it and are wrong-signed out of sample (a deliberately bad model)
    leaky = with_leak(two_symbol_data, noise=0.003)
    days = np.sort(leaky.frame["date"].unique())
    flipped = leaky.frame["date"] >= days[int(len(days) * 0.7)]
    hints = [c for c in leaky.feature_names if c.startswith("hint_")]
    leaky.frame.loc[flipped, hints] *= -1.0

    # WHEN it is trained
    result = train(leaky, tiny_config(), tmp_path)

    # THEN the gate refuses it because it loses to naive, and says so (ONNX parity was fine)
    assert not result.gate.promote
    assert result.gate.rmse_ratio > 1.0
    assert result.gate.reasons == [
        f"ensemble does not beat naive: rmse ratio {result.gate.rmse_ratio:.4f} >= 1.0"
    ]
    assert result.gate.summary.startswith("refused:")
    assert max(p["max_abs"] for p in result.parity.values()) <= 1e-4


def test_gate_promotes_a_model_that_beats_naive(two_symbol_data: Dataset, tmp_path):
    # GIVEN a feature that carries the future return plus noise (a model can beat naive)
    leaky = with_leak(two_symbol_data, noise=0.003)

    # WHEN it is trained
    result = train(leaky, tiny_config(), tmp_path)

    # THEN the ensemble beats naive out of sample, parity passes, and it is promoted
    assert result.gate.rmse_ratio < 1.0
    assert result.gate.promote, result.gate.reasons


def test_gate_refuses_on_failed_parity_even_when_accurate():
    # GIVEN an accurate ensemble whose xgboost ONNX file disagrees with the native model
    parity = {
        "xgboost": {"max_abs": 3e-2, "batch1_max_abs": 0.0},
        "lstm": {"max_abs": 1e-7, "batch1_max_abs": 1e-7},
    }

    # WHEN the gate decides
    decision = promotion_gate(
        0.8, parity, PromotionConfig(max_rmse_ratio=1.0, parity_tolerance=1e-4)
    )

    # THEN it refuses and names the model
    assert not decision.promote
    assert decision.reasons == ["xgboost ONNX parity 3.00e-02 > 1e-04"]


@pytest.mark.integration
def test_published_bundle_is_what_the_api_loads(trained, two_symbol_data: Dataset, store_settings):
    from stockml.inference import Predictor, load_bundle
    from stockml.storage import Store
    from stockml.window import FeatureWindow

    # GIVEN the bundle published to the store as champion
    store = Store.from_settings(store_settings)
    keys = publish_bundle(store, trained, promote=True)
    assert f"{store.models_prefix}/{trained.version}/manifest.json" in keys

    # WHEN the API's loader follows champion.json and predicts from one symbol's feature window
    predictor = Predictor(load_bundle(store))
    frame = clean_frame(
        two_symbol_data.frame, two_symbol_data.feature_names, two_symbol_data.target_names
    )
    val = trained.fitted.val
    symbol, day = val.symbols[-1], val.dates[-1]
    rows = frame[(frame["symbol"] == symbol) & (frame["date"] <= day)]
    window = FeatureWindow.from_frame(rows, two_symbol_data.feature_names)
    got = predictor.log_returns(window, ["ensemble", "lstm", "xgboost"])

    # THEN the API's ONNX ensemble equals training's native ensemble on the same session
    native = {name: m.predict(val.x(m)[-1:])[0] for name, m in trained.fitted.models.items()}
    expected = sum(w * native[n] for n, w in trained.fitted.weights.items())
    assert predictor.version == trained.version
    np.testing.assert_allclose(got["ensemble"], expected, atol=1e-5)
    np.testing.assert_allclose(got["lstm"], native["lstm"], atol=1e-5)
    np.testing.assert_allclose(got["xgboost"], native["xgboost"], atol=1e-5)
    assert (
        json.loads(store.get_bytes(f"{store.models_prefix}/champion.json"))["version"]
        == trained.version
    )
