"""Behaviour of each model: shapes, ONNX parity (batch and single row), reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from stockml.bundle import FeatureSpec
from stockml.model_config import LightGBMConfig, LSTMConfig, RuntimeConfig, XGBoostConfig
from stockml.models import (
    DriftModel,
    EnsembleModel,
    LightGBMModel,
    LSTMModel,
    NaiveModel,
    XGBoostModel,
)
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
    runtime = RuntimeConfig(seed=seed, device="cpu", n_threads=1)
    if name == "lstm":
        return LSTMModel(
            LSTMConfig(hidden_size=8, num_layers=2, max_epochs=3, patience=2, batch_size=64),
            runtime,
        )
    if name == "xgboost":
        return XGBoostModel(
            XGBoostConfig(
                n_estimators=40, max_depth=3, learning_rate=0.1, early_stopping_rounds=10
            ),
            runtime,
        )
    if name == "lightgbm":
        return LightGBMModel(
            LightGBMConfig(
                n_estimators=40,
                num_leaves=7,
                min_data_in_leaf=10,
                learning_rate=0.1,
                early_stopping_rounds=10,
            ),
            runtime,
        )
    if name == "ensemble":
        return EnsembleModel({m: tiny(m, seed) for m in ("lstm", "xgboost", "naive", "drift")})
    return {"naive": NaiveModel, "drift": DriftModel}[name]()


ALL = ["lstm", "xgboost", "lightgbm", "naive", "drift", "ensemble"]


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
    # GIVEN LightGBM trained on float32-scaled features (its float64 thresholds otherwise split
    # a float32 value the other way in ONNX)
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
        LSTMConfig(
            hidden_size=16,
            num_layers=1,
            max_epochs=40,
            patience=2,
            learning_rate=0.01,
            batch_size=64,
        ),
        RuntimeConfig(device="cpu"),
    )

    # WHEN fitting
    model.fit(x[:200], y[:200], x[200:], y[200:])

    # THEN it stopped early and kept the epoch with the lowest validation loss
    epochs = len(model.history_)
    assert epochs < 40
    losses = [h["val_loss"] for h in model.history_]
    assert model.history_[-1]["val_loss"] >= min(losses)
    # and remembers how many optimiser steps that took (200 rows, 4 batches of 64 per epoch):
    # what a refit on 300 rows (5 batches per epoch) runs, without validation
    best = int(np.argmin(losses)) + 1
    assert model.steps_ == best * 4
    again = model.refit(x, y)
    assert again.history_[-1]["steps"] == again.steps_ == model.steps_
    assert len(again.history_) == -(-model.steps_ // 5) and "val_loss" not in again.history_[0]


def test_baselines_predict_zero_and_training_mean(splits):
    # GIVEN the training targets
    fit, val, held_out = splits

    # WHEN the baselines are fitted
    naive = NaiveModel().fit(fit.tabular, fit.y, val.tabular, val.y).predict(held_out.tabular)
    drift = DriftModel().fit(fit.tabular, fit.y, val.tabular, val.y).predict(held_out.tabular)

    # THEN naive is a zero return and drift the training mean per horizon, on every row
    assert np.all(naive == 0)
    np.testing.assert_allclose(drift, np.tile(fit.y.mean(axis=0), (len(held_out), 1)))


def test_ensemble_weights_are_per_horizon_on_the_simplex_and_favour_the_accurate_member():
    # GIVEN one member close to the target at horizon 1 and pure noise at horizon 2, and one
    # member the other way round, on validation rows
    rng = np.random.default_rng(1)
    y = rng.normal(size=(500, 2)) * 0.01
    noise = rng.normal(size=y.shape) * 0.01
    first = np.column_stack([y[:, 0] + noise[:, 0] * 0.2, noise[:, 1]])
    second = np.column_stack([noise[:, 0], y[:, 1] + noise[:, 1] * 0.2])
    ensemble = EnsembleModel({"first": NaiveModel(), "second": NaiveModel()})

    # WHEN weights are fitted on their forecasts
    ensemble.fit_weights({"first": first, "second": second}, y)
    weights = ensemble.weights()

    # THEN each horizon has its own weights, non-negative, summing to 1, favouring the
    # member accurate at that horizon
    assert weights["first"][0] > 0.8 and weights["second"][1] > 0.8
    for h in range(2):
        assert weights["first"][h] >= 0 and weights["second"][h] >= 0
        assert weights["first"][h] + weights["second"][h] == pytest.approx(1.0)
    combined = ensemble.combine({"first": first, "second": second})
    assert np.mean((combined - y) ** 2) < min(np.mean((first - y) ** 2), np.mean((second - y) ** 2))


@pytest.mark.parametrize("name", ["xgboost", "lightgbm"])
def test_tree_refit_equals_a_booster_grown_on_all_rows_for_the_chosen_rounds(name, splits):
    # GIVEN a model early-stopped on validation, and all its labelled rows together
    fit, val, held_out = splits
    model = tiny(name).fit(fit.tabular, fit.y, val.tabular, val.y)
    x, y = np.concatenate([fit.tabular, val.tabular]), np.concatenate([fit.y, val.y])

    # WHEN it is refitted on all rows
    refitted = model.refit(x, y)

    # THEN each horizon is the booster the library itself grows on all rows for the number of
    # trees early stopping chose (an independent call of xgboost / lightgbm)
    assert refitted.iterations_ == model.iterations_
    for h, rounds in enumerate(model.iterations_):
        if name == "xgboost":
            import xgboost as xgb

            oracle = xgb.train(model.params, xgb.DMatrix(x, label=y[:, h]), num_boost_round=rounds)
            expected = oracle.inplace_predict(held_out.tabular)
        else:
            import lightgbm as lgb

            oracle = lgb.train(model.params, lgb.Dataset(x, label=y[:, h]), num_boost_round=rounds)
            expected = oracle.predict(held_out.tabular)
        np.testing.assert_allclose(refitted.predict(held_out.tabular)[:, h], expected, rtol=1e-6)


def test_ensemble_of_sequence_and_tabular_members_feeds_each_its_input(fitted, splits):
    # GIVEN the fitted ensemble (an LSTM, a booster and the baselines) and its members
    ensemble = fitted["ensemble"]
    _, _, held_out = splits

    # WHEN it predicts from sequences
    got = ensemble.predict(held_out.sequence)

    # THEN it is the weighted sum of the LSTM on the sequences and the others on their last row
    members = ensemble.members
    expected = (
        ensemble.weights_[0] * members["lstm"].predict(held_out.sequence)
        + ensemble.weights_[1] * members["xgboost"].predict(held_out.tabular)
        + ensemble.weights_[2] * 0.0
        + ensemble.weights_[3] * members["drift"].predict(held_out.tabular)
    )
    assert ensemble.kind == "sequence"
    np.testing.assert_allclose(got, expected, rtol=1e-12)
