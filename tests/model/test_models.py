"""Behaviour of each model: shapes, ONNX parity (batch and single row), reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from stockml.bundle import FeatureSpec
from stockml.models import DriftModel, LightGBMModel, LSTMModel, NaiveModel, XGBoostModel
from stockml.models.ensemble import combine, fit_weights
from stockml.models.onnx_utils import run_onnx
from stockml.train import Samples, clean_frame, make_samples
from utils.training_data import FEATURES, TARGETS, make_dataset

# log-return units: 1e-4 is 0.01% of price, far below any forecast's error (~1e-2)
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def splits() -> tuple[Samples, Samples, Samples]:
    """MSFT (800 sessions) scaled on its first 60%, cut into fit / val / held-out rows."""
    data = make_dataset(("MSFT",), rows=800)
    frame = clean_frame(data.frame, FEATURES, TARGETS)
    dates = np.sort(frame["date"].unique())
    cut_fit, cut_val = dates[int(len(dates) * 0.6)], dates[int(len(dates) * 0.8)]
    spec = FeatureSpec.fit(
        frame[frame["date"] <= cut_fit], FEATURES, window=10, horizon=len(TARGETS)
    )
    samples = make_samples(frame, spec, TARGETS)
    labelled = np.isfinite(samples.y).all(axis=1)
    return (
        samples.take((samples.dates <= cut_fit) & labelled),
        samples.take((samples.dates > cut_fit) & (samples.dates <= cut_val) & labelled),
        samples.take(samples.dates > cut_val),
    )


def tiny(name: str, seed: int = 3):
    if name == "lstm":
        return LSTMModel(
            hidden_size=8,
            num_layers=2,
            max_epochs=3,
            patience=2,
            batch_size=64,
            seed=seed,
            device="cpu",
            n_threads=1,
        )
    if name == "xgboost":
        return XGBoostModel(
            n_estimators=40,
            max_depth=3,
            learning_rate=0.1,
            early_stopping_rounds=10,
            seed=seed,
            n_jobs=1,
            device="cpu",
        )
    if name == "lightgbm":
        return LightGBMModel(
            n_estimators=40,
            num_leaves=7,
            min_data_in_leaf=10,
            learning_rate=0.1,
            early_stopping_rounds=10,
            seed=seed,
            n_jobs=1,
        )
    return {"naive": NaiveModel, "drift": DriftModel}[name]()


ALL = ["lstm", "xgboost", "lightgbm", "naive", "drift"]


@pytest.fixture(scope="module")
def fitted(splits):
    fit, val, _ = splits
    return {
        name: tiny(name).fit(fit.x(tiny(name)), fit.y, val.x(tiny(name)), val.y) for name in ALL
    }


@pytest.mark.parametrize("name", ALL)
def test_onnx_matches_native_on_held_out_batch_and_single_row(name, fitted, splits):
    # GIVEN a fitted model and rows it never saw (the last 20% of sessions)
    model = fitted[name]
    _, _, held_out = splits
    x = held_out.x(model)
    onnx_bytes = model.to_onnx()

    # WHEN ONNX Runtime predicts the whole batch and then the first row alone
    native = model.predict(x)
    batch = run_onnx(onnx_bytes, x)
    single = run_onnx(onnx_bytes, x[:1])

    # THEN both match the native library within the tolerance, for every horizon
    diff = np.abs(batch - native)
    print(f"{name}: n={len(x)} max={diff.max():.3e} p99.9={np.quantile(diff, 0.999):.3e}")
    assert batch.shape == native.shape == (len(x), len(TARGETS))
    assert batch.dtype == np.float32
    assert len(x) > 1
    assert diff.max() <= TOLERANCE
    assert np.abs(single - native[:1]).max() <= TOLERANCE


def test_lightgbm_onnx_parity_holds_on_many_float32_rows(fitted, splits):
    # GIVEN LightGBM trained on float32-scaled features (the float64 threshold trap, PROBES.md)
    model = fitted["lightgbm"]
    fit, val, held_out = splits
    # every row the model saw or will see, plus the rows repeated in one large batch
    x = np.concatenate([fit.tabular, val.tabular, held_out.tabular])

    # WHEN ONNX Runtime and LightGBM predict all of them
    diff = np.abs(run_onnx(model.to_onnx(), x) - model.predict(x))

    # THEN no row takes another branch: the max, not only a percentile, is within tolerance
    print(f"lightgbm: n={len(x)} max={diff.max():.3e} p99.9={np.quantile(diff, 0.999):.3e}")
    assert diff.max() <= TOLERANCE


@pytest.mark.parametrize("name", ["lstm", "xgboost", "lightgbm"])
def test_same_seed_gives_identical_predictions(name, splits):
    # GIVEN two fresh models with the same seed and the same data
    fit, val, held_out = splits
    first, second = tiny(name, seed=11), tiny(name, seed=11)

    # WHEN both are fitted
    a = first.fit(fit.x(first), fit.y, val.x(first), val.y).predict(held_out.x(first))
    b = second.fit(fit.x(second), fit.y, val.x(second), val.y).predict(held_out.x(second))

    # THEN their predictions are bit-identical, and not all zero
    np.testing.assert_array_equal(a, b)
    assert np.abs(a).max() > 0


def test_lstm_early_stopping_stops_before_max_epochs_on_noise():
    # GIVEN pure-noise targets: validation loss cannot keep improving
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5, 3)).astype(np.float32)
    y = rng.normal(size=(300, 2)) * 0.01
    model = LSTMModel(
        hidden_size=16, num_layers=1, max_epochs=40, patience=2, learning_rate=0.01, device="cpu"
    )

    # WHEN fitting
    model.fit(x[:200], y[:200], x[200:], y[200:])

    # THEN it stopped early and kept the epoch with the lowest validation loss
    epochs = len(model.history_)
    assert epochs < 40
    best = min(h["val_loss"] for h in model.history_)
    assert model.history_[-1]["val_loss"] >= best


def test_baselines_predict_zero_and_training_mean(splits):
    # GIVEN the training targets
    fit, val, held_out = splits

    # WHEN the baselines are fitted
    naive = NaiveModel().fit(fit.tabular, fit.y, val.tabular, val.y).predict(held_out.tabular)
    drift = DriftModel().fit(fit.tabular, fit.y, val.tabular, val.y).predict(held_out.tabular)

    # THEN naive is a zero return and drift the training mean per horizon, on every row
    assert np.all(naive == 0)
    np.testing.assert_allclose(drift, np.tile(fit.y.mean(axis=0), (len(held_out), 1)))


def test_ensemble_weights_favour_the_accurate_member_and_sum_to_one():
    # GIVEN one member close to the target and one pure noise, on validation rows
    rng = np.random.default_rng(1)
    y = rng.normal(size=(500, 3)) * 0.01
    good = y + rng.normal(size=y.shape) * 0.002
    noise = rng.normal(size=y.shape) * 0.01

    # WHEN weights are fitted on them
    weights = fit_weights({"good": good, "noise": noise}, y)

    # THEN they are non-negative, sum to 1 and put most weight on the good member
    assert min(weights.values()) >= 0
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["good"] > 0.8
    combined = combine({"good": good, "noise": noise}, weights)
    assert np.mean((combined - y) ** 2) < np.mean((noise - y) ** 2)
