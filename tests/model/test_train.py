"""Training end to end on small real data: walk-forward, refit, the bundle, the gate, publishing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from stockml.bundle import predictions_key, publish_bundle, read_bundle_dir
from stockml.models.onnx_utils import run_onnx
from stockml.train import Dataset, clean_frame, train, walk_forward
from utils.training_data import tiny_config, with_leak

MODELS = ["lstm", "xgboost", "lightgbm"]
REQUIRED = [
    "rmse_ratio_vs_naive",
    "directional_accuracy",
    "directional_accuracy_always_long",
    "directional_pvalue",
    "dm_pvalue_vs_best_baseline",
    "best_baseline",
    "interval_coverage",
    "interval_width",
    "ic",
    "n",
    "n_sessions",
]


@pytest.fixture(scope="module")
def trained(two_symbol_data: Dataset, tmp_path_factory: pytest.TempPathFactory):
    return train(two_symbol_data, tiny_config(), tmp_path_factory.mktemp("bundles"))


def test_bundle_holds_every_model_the_ensemble_included_and_verifies(
    trained, two_symbol_data: Dataset
):
    # GIVEN a training run on MSFT and ^GSPC
    # WHEN its bundle folder is read back with the serving reader (sha256-checked)
    bundle = read_bundle_dir(trained.bundle_dir)

    # THEN it holds the three models and the ensemble as ONNX files, with their input kinds
    manifest = bundle.manifest
    assert sorted(manifest.models) == sorted([*MODELS, "ensemble"])
    assert manifest.models["lstm"].kind == manifest.models["ensemble"].kind == "sequence"
    assert manifest.models["xgboost"].kind == manifest.models["lightgbm"].kind == "tabular"
    # one weight vector per horizon, on the simplex (members: the models and both baselines)
    weights = manifest.extra["ensemble_weights"]
    assert set(weights) == {*MODELS, "naive", "drift"}
    matrix = np.array(list(weights.values()))
    assert matrix.shape == (5, 3) and (matrix >= 0).all()
    np.testing.assert_allclose(matrix.sum(axis=0), 1.0)
    # a volatility-scaled band per served model, calibrated on the calibration slice
    assert set(manifest.intervals) == {*MODELS, "ensemble"}
    for band in manifest.intervals.values():
        assert band["level"] == 0.9
        assert band["scale_features"] == ["volatility_20", "atr_ratio"]
        assert band["min_scale"] > 0
        assert all(lo < 0 < hi for lo, hi in zip(band["lo"], band["hi"], strict=True))
    assert manifest.symbols == ["MSFT", "^GSPC"]
    # and the FeatureSpec carries the feature config, names, window and horizon
    spec = bundle.feature_spec
    assert spec.feature_config == two_symbol_data.feature_config
    assert spec.feature_names == two_symbol_data.feature_names
    assert (spec.window, spec.horizon) == (10, 3)


def test_published_model_learned_from_all_labelled_history(trained, two_symbol_data: Dataset):
    # GIVEN the frame and its last labelled session (targets known for every horizon)
    frame = clean_frame(
        two_symbol_data.frame, two_symbol_data.feature_names, two_symbol_data.target_names
    )
    labelled = frame[np.isfinite(frame[two_symbol_data.target_names]).all(axis=1)]
    last_labelled = labelled["date"].max()

    # THEN the published model's training window ends there: after the validation and
    # calibration slices, not before them
    assert pd.Timestamp(trained.data_window["train_end"]) == last_labelled
    assert pd.Timestamp(trained.data_window["calibration"][1]) == last_labelled
    # its scaler holds the statistics of every row up to that session (an independent mean)
    rows = frame[frame["date"] <= last_labelled][two_symbol_data.feature_names]
    np.testing.assert_allclose(trained.fitted.spec.mean, rows.mean().to_numpy(), rtol=1e-9)
    assert not np.allclose(
        trained.fitted.spec.mean, frame[two_symbol_data.feature_names].mean().to_numpy(), rtol=1e-9
    )
    # and each refitted booster holds exactly the trees early stopping chose on validation
    chosen = trained.fitted.iterations
    xgb = trained.fitted.ensemble.members["xgboost"]
    assert [b.num_boosted_rounds() for b in xgb.boosters_] == chosen["xgboost"]
    lstm = trained.fitted.ensemble.members["lstm"]
    assert lstm.history_[-1]["steps"] == chosen["lstm"]


def test_bundle_onnx_files_reproduce_native_predictions(trained):
    # GIVEN the ONNX bytes stored in the bundle and the newest rows (what serving will see)
    bundle = read_bundle_dir(trained.bundle_dir)
    rows = trained.fitted.samples.take(np.arange(len(trained.fitted.samples))[-200:])

    # WHEN each model, the ensemble included, runs on them as a batch and on one row
    for name, model in trained.fitted.models.items():
        x = rows.x(model)
        native = model.predict(x)
        # THEN it matches its native twin; the parity record says the same
        assert np.abs(run_onnx(bundle.onnx[name], x) - native).max() <= 1e-4
        assert np.abs(run_onnx(bundle.onnx[name], x[:1]) - native[:1]).max() <= 1e-4
        assert trained.parity[name]["batch_shape"][1] == 3
        assert trained.parity[name]["max_abs"] <= 1e-4


def test_metrics_hold_models_and_baselines_pooled_and_per_symbol(trained):
    # GIVEN the bundle's metrics.json
    metrics = json.loads((trained.bundle_dir / "metrics.json").read_text())
    report = metrics["walk_forward"]["models"]

    # THEN every model, the ensemble and both baselines are scored, pooled and per symbol
    for name in [*MODELS, "ensemble", "naive", "drift"]:
        for block in [report[name]["pooled"], *report[name]["per_symbol"].values()]:
            assert all(key in block for key in REQUIRED), name
            assert block["n"] > 0
            assert set(block["backtest"]) >= {"strategy", "buy_and_hold", "execution_lag"}
            assert set(block["by_horizon"]) == {"1", "2", "3"}
        assert sorted(report[name]["per_symbol"]) == ["MSFT", "^GSPC"]
        assert (
            metrics["pooled"][name]["rmse_ratio_vs_naive"]
            == report[name]["pooled"]["rmse_ratio_vs_naive"]
        )
    # the naive baseline is the yardstick: ratio 1, no direction, no DM test against itself
    naive = report["naive"]["pooled"]
    assert naive["rmse_ratio_vs_naive"] == pytest.approx(1.0)
    assert naive["directional_accuracy"] is None and naive["dm_pvalue"] is None
    # pooled n counts both symbols' test rows; sessions count dates once
    ensemble = report["ensemble"]["pooled"]
    assert ensemble["n"] == sum(b["n"] for b in report["ensemble"]["per_symbol"].values())
    assert ensemble["n_sessions"] == ensemble["n"] / 2
    # in-sample figures are named so: the slice that stopped training and weighed the ensemble
    assert "in_sample_validation" in metrics and "validation" not in metrics
    # the gate object with every check
    assert set(metrics["gate"]) == {"passed", "model", "checks"}
    assert all(
        set(c) == {"name", "value", "threshold", "passed", "rule"}
        for c in metrics["gate"]["checks"]
    )


def test_folds_report_coverage_and_width_per_horizon(trained):
    # GIVEN the walk-forward folds
    for fold in trained.walk_forward.report()["folds"]:
        block = fold["models"]["ensemble"]
        # THEN coverage and mean band width are reported per horizon, and the band is wider
        # at longer horizons (h-session returns spread more)
        assert len(block["interval_coverage"]) == len(block["interval_width"]) == 3
        assert all(0.0 <= c <= 1.0 for c in block["interval_coverage"])
        assert block["interval_width"][0] < block["interval_width"][2]
        # weights per member and horizon
        assert len(fold["weights"]["xgboost"]) == 3


def test_walk_forward_purges_h_sessions_and_never_tests_on_training_days(two_symbol_data: Dataset):
    # GIVEN the walk-forward folds of the tiny configuration
    config = tiny_config(evaluation={**tiny_config().evaluation.model_dump(), "refit": False})
    wf = walk_forward(two_symbol_data, config)

    # THEN fit < val < cal < test, each gap more than H sessions
    days = pd.DatetimeIndex(np.unique(two_symbol_data.frame["date"]))
    h = two_symbol_data.horizon
    for fold in wf.report()["folds"]:
        at = {
            k: [days.get_loc(pd.Timestamp(d)) for d in fold[k]]
            for k in ("fit", "val", "cal", "test")
        }
        assert at["val"][0] - at["fit"][1] > h
        assert at["cal"][0] - at["val"][1] > h
        assert at["test"][0] - at["cal"][1] > h
    # and the test blocks follow each other without overlap (expanding window)
    folds = wf.report()["folds"]
    for earlier, later in zip(folds, folds[1:], strict=False):
        assert pd.Timestamp(earlier["test"][1]) < pd.Timestamp(later["test"][0])
        assert pd.Timestamp(later["fit"][1]) > pd.Timestamp(earlier["fit"][1])


def test_gate_refuses_a_model_that_loses_to_the_baselines(two_symbol_data: Dataset, tmp_path):
    # GIVEN a feature that tells the future return until the test period, then its opposite:
    # the models learn to follow it and are wrong-signed out of sample (a deliberately bad model)
    leaky = with_leak(two_symbol_data, noise=0.003)
    days = np.sort(leaky.frame["date"].unique())
    flipped = leaky.frame["date"] >= days[int(len(days) * 0.7)]
    hints = [c for c in leaky.feature_names if c.startswith("hint_")]
    leaky.frame.loc[flipped, hints] *= -1.0

    # WHEN it is trained
    result = train(leaky, tiny_config(), tmp_path)

    # THEN the gate refuses it: no significant edge over the better baseline, RMSE above it
    # in the folds; ONNX parity was fine
    checks = {c.name: c for c in result.gate.checks}
    assert not result.gate.passed
    assert not checks["dm_pvalue_vs_best_baseline_h1"].passed
    assert checks["folds_beating_best_baseline_h1"].value == 0
    assert checks["onnx_parity_max_abs"].passed
    assert result.gate.summary.startswith("refused: dm_pvalue_vs_best_baseline_h1")
    # it is still published as a bundle (a challenger), with the verdict in its metrics
    metrics = json.loads((result.bundle_dir / "metrics.json").read_text())
    assert metrics["gate"]["passed"] is False


def test_gate_promotes_a_model_that_beats_the_baselines(two_symbol_data: Dataset, tmp_path):
    # GIVEN a feature that carries the future return plus noise (a model can beat both
    # baselines); it tells the NEXT session's return, so the backtest trades at the signal's
    # own close (lag 0) to profit from it
    leaky = with_leak(two_symbol_data, noise=0.003)
    config = tiny_config(evaluation={**tiny_config().evaluation.model_dump(), "execution_lag": 0})

    # WHEN it is trained
    result = train(leaky, config, tmp_path)

    # THEN every check passes and the gate's verdict agrees with the metrics it reports
    assert result.gate.passed, result.gate.summary
    pooled = result.walk_forward.metrics["ensemble"]["pooled"]
    assert pooled["dm_pvalue_vs_best_baseline"] < 0.05
    assert pooled["rmse_ratio_vs_best_baseline"] < 1.0
    lo, hi = config.promotion.coverage_range
    assert lo <= pooled["interval_coverage"] <= hi


@pytest.mark.integration
def test_published_bundle_is_what_the_api_loads(trained, two_symbol_data: Dataset, store_settings):
    from stockml.inference import Predictor, load_bundle
    from stockml.storage import Store
    from stockml.window import FeatureWindow

    # GIVEN the bundle published to the store as champion
    store = Store.from_settings(store_settings)
    keys = publish_bundle(store, trained.bundle_dir, trained.version, True, "promoted")
    assert f"{store.models_prefix}/{trained.version}/manifest.json" in keys
    # its out-of-sample forecasts sit beside the bundle folder, not in it
    assert predictions_key(store.models_prefix, trained.version) in keys
    assert not any(k.endswith(".parquet") for k in store.list_keys(f"models/{trained.version}/"))

    # WHEN the API's loader follows champion.json and predicts from one symbol's feature window
    predictor = Predictor(load_bundle(store))
    frame = clean_frame(
        two_symbol_data.frame, two_symbol_data.feature_names, two_symbol_data.target_names
    )
    samples = trained.fitted.samples
    symbol, day = samples.symbols[-1], samples.dates[-1]
    rows = frame[(frame["symbol"] == symbol) & (frame["date"] <= day)]
    window = FeatureWindow.from_frame(rows, two_symbol_data.feature_names)
    got = predictor.log_returns(window, ["ensemble", "lstm", "xgboost"])
    forecast = predictor.predict(window, ["ensemble"])

    # THEN the API's ONNX ensemble equals training's native ensemble on the same session
    native = {name: m.predict(samples.x(m)[-1:])[0] for name, m in trained.fitted.models.items()}
    assert predictor.version == trained.version
    for name in ("ensemble", "lstm", "xgboost"):
        np.testing.assert_allclose(got[name], native[name], atol=1e-5)
    # and its band is the calibrated one, scaled by the row's raw volatility features
    band = trained.fitted.intervals["ensemble"]
    raw = rows[band["scale_features"]].to_numpy()[-1]
    scale = max(np.sqrt(np.mean(raw**2)), band["min_scale"])
    close = rows["close"].to_numpy()[-1]
    np.testing.assert_allclose(
        forecast.models["ensemble"].lower,
        close * np.exp(native["ensemble"] + scale * np.asarray(band["lo"])),
        rtol=1e-5,
    )
    assert (
        json.loads(store.get_bytes(f"{store.models_prefix}/champion.json"))["version"]
        == trained.version
    )


def test_metrics_hold_the_ensembles_backtest_equity_beside_buy_and_hold(trained):
    # GIVEN the bundle's metrics.json and the walk-forward's out-of-sample rows
    metrics = json.loads((trained.bundle_dir / "metrics.json").read_text())
    curve = metrics["equity_curve"]
    wf = trained.walk_forward
    # THEN the curve is the ensemble's, one point per walk-forward test session
    assert curve["model"] == "ensemble"
    sessions = sorted(pd.unique(pd.to_datetime(wf.forecasts.dates)))
    assert curve["dates"] == [d.date().isoformat() for d in sessions]
    # buy-and-hold: equal weight across symbols, each session's 1-session simple return
    frame = pd.DataFrame({"date": wf.forecasts.dates, "ret": np.expm1(wf.y[:, 0])})
    hold = (1.0 + frame.groupby("date")["ret"].mean().sort_index()).cumprod()
    np.testing.assert_allclose(curve["buy_and_hold"], hold.to_numpy(), rtol=1e-5)
    # the strategy's last equity is the backtest block's annual return, compounded back
    backtest = metrics["walk_forward"]["models"]["ensemble"]["pooled"]["backtest"]
    years = len(curve["dates"]) / 252
    annual = backtest["strategy"]["annual_return"]
    assert curve["strategy"][-1] == pytest.approx((1.0 + annual) ** years, rel=1e-4)
