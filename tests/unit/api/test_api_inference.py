"""Predictor and bundle loading: real ONNX models, real bundle, real moto_server store."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from stockml import calendar
from stockml.bundle import read_bundle_dir
from stockml.errors import BundleError, FeatureError, UnknownSymbolError, ValidationError
from stockml.inference import (
    ENSEMBLE,
    PredictionService,
    Predictor,
    StoreFeatureSource,
    champion_key,
    load_bundle,
)
from stockml.settings import StoreSettings
from stockml.storage import Store
from utils.serving_bundle import FEATURES, BuiltBundle, publish


@pytest.fixture(scope="module")
def predictor(serving_bundle: BuiltBundle) -> Predictor:
    return Predictor(read_bundle_dir(serving_bundle.folder))


def msft(serving_bundle: BuiltBundle) -> pd.DataFrame:
    f = serving_bundle.features
    return f[f["symbol"] == "MSFT"].reset_index(drop=True)


def test_predict_matches_the_onnx_models_and_the_price_formula(
    predictor: Predictor, serving_bundle: BuiltBundle
) -> None:
    # GIVEN MSFT's latest feature rows and the bundle's two ONNX models run directly
    rows = msft(serving_bundle).tail(predictor.rows_needed)
    spec, manifest = predictor.spec, predictor.manifest
    x = spec.transform(rows)
    ridge = ort.InferenceSession(serving_bundle.folder.joinpath("ridge.onnx").read_bytes()).run(
        None, {"input": x[-1:]}
    )[0][0]
    lstm = ort.InferenceSession(serving_bundle.folder.joinpath("lstm.onnx").read_bytes()).run(
        None, {"input": x[None]}
    )[0][0]
    w = manifest.ensemble_weights

    # WHEN the predictor forecasts 3 days
    forecast = predictor.predict(rows, days=3)

    # THEN returns, ensemble, prices, intervals and dates follow the bundle contract
    last_close = float(rows["close"].iloc[-1])
    np.testing.assert_allclose(forecast.models["ridge"].log_returns, ridge[:3], rtol=1e-6)
    np.testing.assert_allclose(forecast.models["lstm"].log_returns, lstm[:3], rtol=1e-6)
    ens = w["ridge"] * ridge[:3].astype(float) + w["lstm"] * lstm[:3].astype(float)
    np.testing.assert_allclose(forecast.models[ENSEMBLE].log_returns, ens, rtol=1e-6)
    np.testing.assert_allclose(
        forecast.models[ENSEMBLE].prices, last_close * np.exp(ens), rtol=1e-9
    )
    band = manifest.intervals["ridge"]
    np.testing.assert_allclose(
        forecast.models["ridge"].lower,
        last_close * np.exp(ridge[:3] + np.array(band["lo"][:3])),
        rtol=1e-6,
    )
    assert (forecast.models["ridge"].lower < forecast.models["ridge"].prices).all()
    assert (forecast.models["ridge"].upper > forecast.models["ridge"].prices).all()
    assert [pd.Timestamp(d) for d in forecast.dates] == list(
        calendar.next_sessions(rows["date"].iloc[-1], 3)
    )
    assert forecast.last_close == last_close and forecast.model_version == manifest.version


def test_sequence_model_accepts_batch_one_and_more(
    predictor: Predictor, serving_bundle: BuiltBundle
) -> None:
    # GIVEN windows of two different end dates
    f = msft(serving_bundle)
    x1 = predictor.spec.transform(f.iloc[-predictor.rows_needed :])
    x2 = predictor.spec.transform(f.iloc[-predictor.rows_needed - 1 : -1])
    session = predictor._sessions["lstm"]
    # WHEN run as one batch of 2 and as two batches of 1
    both = session.run(None, {"input": np.stack([x1, x2])})[0]
    one = session.run(None, {"input": x1[None]})[0]
    # THEN the rows agree and differ between windows
    np.testing.assert_allclose(both[0], one[0], rtol=1e-5, atol=1e-7)
    assert not np.allclose(both[0], both[1])


def test_predict_rejects_bad_requests(predictor: Predictor, serving_bundle: BuiltBundle) -> None:
    rows = msft(serving_bundle).tail(predictor.rows_needed)
    with pytest.raises(ValidationError, match="days"):
        predictor.predict(rows, days=predictor.horizon + 1)
    with pytest.raises(ValidationError, match="unknown models"):
        predictor.predict(rows, models=["prophet"])
    with pytest.raises(FeatureError, match="need"):
        predictor.predict(rows.tail(2))
    broken = rows.copy()
    broken.loc[broken.index[-1], FEATURES[0]] = np.nan
    with pytest.raises(FeatureError, match="NaN"):
        predictor.predict(broken)


@pytest.mark.integration
def test_load_bundle_follows_the_champion_pointer(
    store_settings: StoreSettings, serving_bundle: BuiltBundle
) -> None:
    # GIVEN a store with the bundle published and marked champion
    store = Store.from_settings(store_settings)
    publish(store, serving_bundle)
    # WHEN loading the champion and the version by name
    champion = load_bundle(store)
    named = load_bundle(store, version=serving_bundle.manifest.version)
    # THEN both are the published bundle
    assert champion.manifest.version == named.manifest.version == serving_bundle.manifest.version
    assert champion.onnx["ridge"] == serving_bundle.folder.joinpath("ridge.onnx").read_bytes()


@pytest.mark.integration
def test_load_bundle_fails_clearly(
    store_settings: StoreSettings, corrupt_store: StoreSettings
) -> None:
    # GIVEN an empty store, a bad pointer, and a store with a flipped byte
    empty = Store.from_settings(store_settings)
    # THEN each gives a BundleError that says what is wrong
    with pytest.raises(BundleError, match="no champion bundle"):
        load_bundle(empty)
    with pytest.raises(BundleError, match="no files"):
        load_bundle(empty, version="v-missing")
    empty.put_bytes(champion_key(empty.models_prefix), b"not json")
    with pytest.raises(BundleError, match="not a version pointer"):
        load_bundle(empty)
    with pytest.raises(BundleError, match="ridge.onnx is corrupt: sha256"):
        load_bundle(Store.from_settings(corrupt_store))


@pytest.mark.integration
def test_service_caches_forecasts_and_features(
    serving_store: StoreSettings, predictor: Predictor
) -> None:
    # GIVEN a service over the store with a controllable clock for the feature cache
    now = [0.0]
    store = Store.from_settings(serving_store)
    source = StoreFeatureSource(store, ttl_s=60, clock=lambda: now[0])
    service = PredictionService(predictor, source)
    # memory alone cannot answer before the store was read
    assert service.cached_forecast("MSFT", 5) is None
    # WHEN the same symbol is forecast twice, with different days
    first = service.forecast("MSFT", 5)
    second = service.forecast("MSFT", 2, ["ridge"])
    # THEN the second is a slice of the cached forecast (same arrays), not a new model run
    assert np.shares_memory(second.models["ridge"].prices, first.models["ridge"].prices)
    assert list(second.models) == ["ridge"] and len(second.dates) == 2
    # AND memory alone now answers, with the same numbers
    warm = service.cached_forecast("MSFT", 3)
    assert warm is not None and np.shares_memory(
        warm.models["lstm"].prices, first.models["lstm"].prices
    )
    # AND features are re-read once the TTL has passed (a new frame object)
    cached = source.latest("MSFT", predictor.rows_needed)
    now[0] = 61.0
    assert service.cached_forecast("MSFT", 3) is None  # expired: the next request re-reads
    assert source.latest("MSFT", predictor.rows_needed) is not cached
    # AND unknown symbols are refused
    with pytest.raises(UnknownSymbolError):
        service.forecast("AAPL", 1)


@pytest.mark.integration
def test_symbols_lists_symbols_with_model_and_features(
    serving_store: StoreSettings, predictor: Predictor
) -> None:
    service = PredictionService(predictor, StoreFeatureSource(Store.from_settings(serving_store)))
    statuses = service.symbols()
    assert [s.symbol for s in statuses] == ["MSFT", "^GSPC"]
    # the embedded data ends in 2017/2018: stale by years
    assert all(not s.fresh and s.age_sessions > 1000 for s in statuses)


def test_serving_path_imports_no_training_library() -> None:
    # GIVEN a fresh interpreter
    code = textwrap.dedent(
        """
        import json, sys
        import stockml.inference, stockml.api, stockml.storage
        sys.path.insert(0, "functions/api")
        heavy = ["torch", "xgboost", "lightgbm", "sklearn", "mlflow", "scipy", "skl2onnx", "onnx"]
        print(json.dumps([m for m in heavy if m in sys.modules]))
        """
    )
    # WHEN it imports the whole serving path
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # THEN none of the training libraries was imported
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
