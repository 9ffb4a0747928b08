"""GET /rankings and any-symbol serving of a global (universe) bundle, in-process against a
real moto_server; the oracle is the bundle's own ONNX model run on each stored window alone."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from stockml.api import create_app
from stockml.bundle import read_bundle_dir, score_to_return
from stockml.settings import Settings, StoreSettings
from stockml.storage import Store
from stockml.window import FeatureWindow, UniverseWindow, latest_keys, universe_key, windows_prefix
from utils.serving_bundle import BuiltBundle
from utils.universe_bundle import DELISTED, UNTRAINED

pytestmark = pytest.mark.integration  # the store is a real moto_server


@pytest.fixture(scope="module")
def client(make_settings: Callable[..., Settings], universe_store: StoreSettings) -> TestClient:
    return TestClient(
        create_app(make_settings(store=universe_store)), raise_server_exceptions=False
    )


def stored_windows(store_settings: StoreSettings) -> dict[str, FeatureWindow]:
    store = Store.from_settings(store_settings)
    keys = latest_keys(
        store.features_prefix, store.list_keys(windows_prefix(store.features_prefix))
    )
    return {s: FeatureWindow.from_bytes(store.get_bytes(k)) for s, (_d, k) in keys.items()}


def one_by_one(built: BuiltBundle, windows: dict[str, FeatureWindow]) -> dict[str, np.ndarray]:
    """The ranking model's outputs ``[H]`` per symbol, each window run ALONE (batch of one)."""
    bundle = read_bundle_dir(built.folder)
    model = bundle.manifest.extra["universe"]["model"]
    session = ort.InferenceSession(bundle.onnx[model], providers=["CPUExecutionProvider"])
    spec = bundle.feature_spec
    out = {}
    for symbol, window in windows.items():
        x = spec.transform(window.tail(spec.window))[None]
        out[symbol] = session.run(None, {"input": x})[0][0].astype(np.float64)
    return out


def test_the_ranking_orders_every_current_symbol_by_its_models_score(
    client: TestClient, universe_bundle: BuiltBundle, universe_store: StoreSettings
) -> None:
    # GIVEN the stored windows and each one's score, computed symbol by symbol
    windows = stored_windows(universe_store)
    newest = max(w.last_date for w in windows.values())
    current = {s: w for s, w in windows.items() if w.last_date == newest}
    assert DELISTED not in current and UNTRAINED in current
    scores = one_by_one(universe_bundle, current)

    # WHEN the API ranks the universe at horizon 2
    r = client.get("/rankings", params={"horizon": 2})

    # THEN every current symbol (the untrained one too), none other, best score first
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["as_of"] == newest.isoformat() and body["horizon"] == 2
    assert body["model_version"] == universe_bundle.manifest.version
    assert body["n_ranked"] == len(current) and body["n_excluded"] == 1
    ranked = [row["symbol"] for row in body["rankings"]]
    assert ranked == sorted(current, key=lambda s: -scores[s][1])
    assert [row["rank"] for row in body["rankings"]] == list(range(1, len(current) + 1))
    extra = universe_bundle.manifest.extra["universe"]
    for row in body["rankings"]:
        s = scores[row["symbol"]]
        assert row["score"] == pytest.approx(s[1], abs=1e-6)
        expected = score_to_return(s[None], extra["drift"], extra["score_map"]["ensemble"])[0]
        assert row["expected_return"] == pytest.approx(np.expm1(expected[1]), abs=1e-6)
        assert row["lower"] <= row["expected_return"] <= row["upper"]
        assert row["last_close"] == pytest.approx(current[row["symbol"]].last_close)
    # AND the bundle's walk-forward figures ride along (the dashboard's equity curve)
    ranking = universe_bundle.manifest  # the metrics are in metrics.json
    assert ranking is not None
    assert body["long_short"]["dates"] and len(body["long_short"]["equity"]) == len(
        body["long_short"]["dates"]
    )
    assert isinstance(body["rank_ic"], float) and body["best_factor"]


def test_top_gives_both_ends_and_bad_horizons_are_refused(client: TestClient) -> None:
    full = client.get("/rankings", params={"horizon": 1}).json()["rankings"]
    top = client.get("/rankings", params={"horizon": 1, "top": 3}).json()["rankings"]
    assert [r["symbol"] for r in top] == [r["symbol"] for r in full[:3] + full[-3:]]
    assert [r["rank"] for r in top] == [1, 2, 3, len(full) - 2, len(full) - 1, len(full)]
    assert client.get("/rankings", params={"top": 1000}).json()["rankings"] == full
    assert client.get("/rankings", params={"horizon": 6}).status_code == 422
    assert client.get("/rankings", params={"horizon": 0}).status_code == 422
    assert client.get("/rankings", params={"top": 0}).status_code == 422


def test_a_global_bundle_predicts_a_symbol_it_was_not_trained_on(
    client: TestClient, universe_bundle: BuiltBundle, universe_store: StoreSettings
) -> None:
    # GIVEN a symbol with stored features that is not in the bundle's symbol list
    assert UNTRAINED not in universe_bundle.manifest.symbols
    window = stored_windows(universe_store)[UNTRAINED]
    score = one_by_one(universe_bundle, {UNTRAINED: window})[UNTRAINED]
    extra = universe_bundle.manifest.extra["universe"]

    # WHEN it is predicted and listed
    r = client.post(f"/predict/{UNTRAINED}", json={"days": 3, "models": ["ensemble"]})
    listed = [s["symbol"] for s in client.get("/symbols").json()["symbols"]]

    # THEN the forecast is the score mapped to a return, as a price; and /symbols lists it
    assert r.status_code == 200, r.text
    expected = score_to_return(score[None], extra["drift"], extra["score_map"]["ensemble"])[0]
    prices = window.last_close * np.exp(expected[:3])
    assert r.json()["predictions"]["ensemble"] == pytest.approx(prices, rel=1e-6)
    assert UNTRAINED in listed and DELISTED in listed
    # a symbol without features is still unknown
    assert client.post("/predict/NOPE", json={"days": 1}).status_code == 404


def test_the_ranking_equals_predict_for_the_same_symbol(client: TestClient) -> None:
    best = client.get("/rankings", params={"horizon": 3}).json()["rankings"][0]
    forecast = client.post(f"/predict/{best['symbol']}", json={"days": 3}).json()
    price = forecast["predictions"]["ensemble"][2]
    assert price / forecast["last_close"] - 1 == pytest.approx(best["expected_return"], abs=1e-6)
    band = forecast["intervals"]["ensemble"]
    assert band["lower"][2] / forecast["last_close"] - 1 == pytest.approx(best["lower"], abs=1e-6)


def test_the_universe_object_holds_each_windows_rows_exactly(
    universe_store: StoreSettings,
) -> None:
    store = Store.from_settings(universe_store)
    universe = UniverseWindow.from_bytes(store.get_bytes(universe_key(store.features_prefix)))
    windows = stored_windows(universe_store)
    assert universe.symbols == tuple(sorted(windows))
    for symbol, window in windows.items():
        mine = universe.window(symbol)
        tail = window.tail(universe.rows)
        assert np.array_equal(mine.values, tail.values)
        assert np.array_equal(mine.dates, tail.dates) and np.array_equal(mine.close, tail.close)


def test_a_bundle_of_one_symbol_has_no_ranking(make_settings: Callable[..., Settings]) -> None:
    client = TestClient(create_app(make_settings()), raise_server_exceptions=False)
    r = client.get("/rankings")
    assert r.status_code == 404 and r.json()["error"]["code"] == "no_ranking"
