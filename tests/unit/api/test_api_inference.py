"""Predictor and bundle loading: real ONNX models, real bundle, real moto_server store."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from stockml import calendar
from stockml.bundle import Bundle, read_bundle_dir
from stockml.errors import BundleError, FeatureError, UnknownSymbolError, ValidationError
from stockml.inference import (
    PredictionService,
    Predictor,
    WindowFeatureSource,
    champion_key,
    load_bundle,
)
from stockml.s3 import S3Reader
from stockml.settings import StoreSettings
from stockml.storage import Store
from stockml.window import FeatureWindow
from utils.serving_bundle import FEATURES, HORIZON, BuiltBundle, publish


@pytest.fixture(scope="module")
def predictor(serving_bundle: BuiltBundle) -> Predictor:
    return Predictor(read_bundle_dir(serving_bundle.folder))


def msft(serving_bundle: BuiltBundle) -> pd.DataFrame:
    f = serving_bundle.features
    return f[f["symbol"] == "MSFT"].reset_index(drop=True)


def window(rows: pd.DataFrame) -> FeatureWindow:
    return FeatureWindow.from_frame(rows, FEATURES)


def reader(settings: StoreSettings) -> S3Reader:
    return S3Reader(settings.bucket, settings.endpoint_url, settings.region)


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
    w = manifest.extra["ensemble_weights"]

    # WHEN the predictor forecasts 3 days from the same rows as a feature window
    forecast = predictor.predict(window(rows), days=3)

    # THEN returns, ensemble, prices, intervals and dates follow the bundle contract
    last_close = float(rows["close"].iloc[-1])
    np.testing.assert_allclose(forecast.models["ridge"].log_returns, ridge[:3], rtol=1e-6)
    np.testing.assert_allclose(forecast.models["lstm"].log_returns, lstm[:3], rtol=1e-6)
    ens = w["ridge"] * ridge[:3].astype(float) + w["lstm"] * lstm[:3].astype(float)
    # the ensemble is a model of its own: one ONNX graph holding both members and the weights
    np.testing.assert_allclose(forecast.models["ensemble"].log_returns, ens, rtol=1e-5)
    np.testing.assert_allclose(
        forecast.models["ensemble"].prices, last_close * np.exp(ens), rtol=1e-5
    )
    band = manifest.intervals["ridge"]
    np.testing.assert_allclose(
        forecast.models["ridge"].lower,
        last_close * np.exp(ridge[:3] + np.array(band["lo"][:3])),
        rtol=1e-6,
    )
    assert (forecast.models["ridge"].lower < forecast.models["ridge"].prices).all()
    assert (forecast.models["ridge"].upper > forecast.models["ridge"].prices).all()
    assert list(forecast.dates) == [
        d.date() for d in calendar.next_sessions(rows["date"].iloc[-1], 3)
    ]
    assert forecast.last_close == last_close and forecast.model_version == manifest.version
    assert forecast.last_date == rows["date"].iloc[-1].date()


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
        predictor.predict(window(rows), days=predictor.horizon + 1)
    with pytest.raises(ValidationError, match="unknown models"):
        predictor.predict(window(rows), models=["prophet"])
    with pytest.raises(FeatureError, match="need"):
        predictor.predict(window(rows.tail(2)))
    broken = rows.copy()
    broken.loc[broken.index[-1], FEATURES[0]] = np.nan
    with pytest.raises(FeatureError, match="NaN"):
        predictor.predict(window(broken))
    with pytest.raises(FeatureError, match="missing columns"):
        predictor.predict(FeatureWindow.from_frame(rows, FEATURES[1:]))


def _swap_onnx(bundle: Bundle) -> Bundle:
    return replace(bundle, onnx={"ridge": bundle.onnx["lstm"], "lstm": bundle.onnx["ridge"]})


def _narrow_spec(bundle: Bundle) -> Bundle:
    spec = bundle.feature_spec
    return replace(
        bundle,
        feature_spec=replace(
            spec, feature_names=spec.feature_names[:-1], mean=spec.mean[:-1], std=spec.std[:-1]
        ),
    )


def _longer_horizon(bundle: Bundle) -> Bundle:
    return replace(bundle, manifest=replace(bundle.manifest, horizon=bundle.manifest.horizon + 1))


def _wrong_output(bundle: Bundle) -> Bundle:
    models = dict(bundle.manifest.models)
    models["ridge"] = replace(models["ridge"], output_name="prediction")
    return replace(bundle, manifest=replace(bundle.manifest, models=models))


def _short_window(bundle: Bundle) -> Bundle:
    # the LSTM graph was exported for windows of 10 rows; the spec would feed it 9
    return replace(bundle, feature_spec=replace(bundle.feature_spec, window=9))


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        (
            _swap_onnx,
            r"model (ridge|lstm) cannot run: the manifest wants \w+ input 'input' of shape ",
        ),
        (
            _narrow_spec,
            r"model \w+ cannot run: the manifest wants \w+ input 'input' of shape "
            r"\[1, (10, )?{n1}\]; its graph takes 'input' of shape \[.*{n}\]",
        ),
        (
            _short_window,
            r"model (lstm|ensemble) cannot run: the manifest wants sequence input 'input' of shape "
            r"\[1, 9, {n}\]; its graph takes 'input' of shape \['batch', 10, {n}\]",
        ),
        (_longer_horizon, r"cannot serve horizon {h1}: a test run gave {h} values"),
        (_wrong_output, r"model ridge cannot run: the manifest wants .* -> 'prediction'"),
    ],
)
def test_a_model_that_cannot_run_fails_the_load(
    serving_bundle: BuiltBundle, broken: Callable[[Bundle], Bundle], reason: str
) -> None:
    # GIVEN the bundle's verified contents with one inconsistency the checksums cannot see
    bundle = broken(read_bundle_dir(serving_bundle.folder))
    # WHEN the predictor is made (once per process) THEN it refuses, naming model and cause
    n, h = len(FEATURES), HORIZON
    with pytest.raises(BundleError, match=reason.format(n=n, n1=n - 1, h=h, h1=h + 1)):
        Predictor(bundle)


@pytest.mark.integration
def test_load_bundle_follows_the_champion_pointer(
    store_settings: StoreSettings, serving_bundle: BuiltBundle
) -> None:
    # GIVEN a store with the bundle published and marked champion
    publish(Store.from_settings(store_settings), serving_bundle)
    # WHEN serving's reader loads the champion and the version by name
    champion = load_bundle(reader(store_settings))
    named = load_bundle(reader(store_settings), version=serving_bundle.manifest.version)
    # THEN both are the published bundle
    assert champion.manifest.version == named.manifest.version == serving_bundle.manifest.version
    assert champion.onnx["ridge"] == serving_bundle.folder.joinpath("ridge.onnx").read_bytes()


@pytest.mark.integration
def test_load_bundle_fails_clearly(
    store_settings: StoreSettings, corrupt_store: StoreSettings
) -> None:
    # GIVEN an empty store, a bad pointer, and a store with a flipped byte
    empty = reader(store_settings)
    # THEN each gives a BundleError that says what is wrong
    with pytest.raises(BundleError, match="no champion bundle"):
        load_bundle(empty)
    with pytest.raises(BundleError, match="no files"):
        load_bundle(empty, version="v-missing")
    Store.from_settings(store_settings).put_bytes(champion_key("models"), b"not json")
    with pytest.raises(BundleError, match="not a version pointer"):
        load_bundle(empty)
    with pytest.raises(BundleError, match="ridge.onnx is corrupt: sha256"):
        load_bundle(reader(corrupt_store))


@pytest.mark.integration
def test_service_caches_forecasts_and_features(
    serving_store: StoreSettings, predictor: Predictor
) -> None:
    # GIVEN a service over the store with a controllable clock for the feature cache, and a
    # count of the objects it reads
    now = [0.0]
    reads: list[str] = []
    bucket = reader(serving_store)
    get = bucket.get_bytes
    bucket.get_bytes = lambda key: reads.append(key) or get(key)  # type: ignore[method-assign]
    source = WindowFeatureSource(bucket, ttl_s=60, clock=lambda: now[0])
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
    # AND requests that ask the same get the same object (the prediction log encodes it once),
    # and requests that ask otherwise do not
    assert service.cached_forecast("MSFT", 3) is warm
    assert service.cached_forecast("MSFT", 2, ["ridge"]) is second
    assert service.cached_forecast("MSFT", 2) is not second
    assert first.select(3, age_sessions=warm.age_sessions, stale=not warm.stale) is not warm
    # AND the window was read once for all of that, then again once the TTL has passed
    assert len(reads) == 1 and reads[0].startswith("features/_latest/symbol=MSFT/")
    now[0] = 61.0
    assert service.cached_forecast("MSFT", 3) is None  # expired: the next request re-reads
    again = service.forecast("MSFT", 3)
    assert len(reads) == 2
    np.testing.assert_array_equal(again.models["lstm"].prices, first.models["lstm"].prices[:3])
    # AND unknown symbols are refused
    with pytest.raises(UnknownSymbolError):
        service.forecast("AAPL", 1)


@pytest.mark.integration
def test_symbols_lists_symbols_with_model_and_features(
    serving_store: StoreSettings, predictor: Predictor
) -> None:
    service = PredictionService(predictor, WindowFeatureSource(reader(serving_store)))
    statuses = service.symbols()
    assert [s.symbol for s in statuses] == ["MSFT", "^GSPC"]
    # dated by the windows' keys: the features table's last dates
    table = Store.from_settings(serving_store).last_dates("features")
    assert {s.symbol: s.last_date for s in statuses} == {k: v.date() for k, v in table.items()}
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


@pytest.mark.integration
def test_missing_or_corrupt_windows_fail_clearly(
    store_settings: StoreSettings, predictor: Predictor, serving_bundle: BuiltBundle
) -> None:
    # GIVEN a store without any feature window
    service = PredictionService(predictor, WindowFeatureSource(reader(store_settings)))
    # THEN a known symbol is unknown to serving, and the error says where it looked
    with pytest.raises(UnknownSymbolError, match="no window under features/_latest/symbol=MSFT/"):
        service.forecast("MSFT", 1)
    # WHEN MSFT's window is written truncated (a corrupt object)
    good = FeatureWindow.from_frame(msft(serving_bundle), FEATURES).to_bytes()
    key = "features/_latest/symbol=MSFT/20171110.npz"
    Store.from_settings(store_settings).put_bytes(key, good[: len(good) // 2])
    # THEN the forecast fails with a FeatureError, not a traceback of numpy's
    with pytest.raises(FeatureError, match="feature window is unreadable"):
        service.forecast("MSFT", 1)


@pytest.mark.integration
def test_a_window_replaced_between_list_and_get_is_read_again(
    serving_store: StoreSettings, predictor: Predictor
) -> None:
    # GIVEN a LIST that still names a window the pipeline has just replaced (and deleted)
    bucket = reader(serving_store)
    real_list = bucket.list_keys
    stale = ["features/_latest/symbol=MSFT/20000103.npz"]
    answers = iter([stale])
    bucket.list_keys = lambda prefix: next(answers, None) or real_list(prefix)  # type: ignore[method-assign]
    source = WindowFeatureSource(bucket)
    # WHEN serving reads MSFT's window
    window = source.latest("MSFT", predictor.rows_needed)
    # THEN the failed GET of the old key is followed by a new LIST, and the new window is read
    assert window.symbol == "MSFT" and window.last_date.year == 2017
