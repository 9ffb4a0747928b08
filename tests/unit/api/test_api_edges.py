"""The API's edges in-process (Starlette TestClient): a bundle that cannot run, the body limit,
clipped echoes, a schema that matches what is served, the rate limit's client address, and
the age of the data behind a forecast."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from datetime import date

import exchange_calendars as xcals
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from stockml.api import create_app
from stockml.settings import Settings, StoreSettings
from utils.api_fixtures import API_KEY
from utils.serving_bundle import BuiltBundle

pytestmark = pytest.mark.integration  # the store is a real moto_server


@pytest.fixture(scope="module")
def app(make_settings: Callable[..., Settings]) -> FastAPI:
    return create_app(make_settings())


@pytest.fixture(scope="module")
def client(app: FastAPI) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


def sessions_since(last: date) -> int:
    """Oracle: XNYS sessions after ``last`` that have closed by now (exchange-calendars)."""
    with warnings.catch_warnings():  # exchange-calendars' own pandas deprecations
        warnings.simplefilter("ignore", DeprecationWarning)
        closes = xcals.get_calendar("XNYS").schedule["close"]  # UTC, one row per session
    after = closes[closes.index > pd.Timestamp(last)]
    return int((after <= pd.Timestamp.now(tz="UTC")).sum())


# ------------------------------------------------------------------ a bundle that cannot run


def test_an_intact_bundle_whose_models_cannot_run_is_unhealthy(
    make_settings: Callable[..., Settings], unrunnable_store: StoreSettings
) -> None:
    # GIVEN a champion bundle whose sha256 all match, but whose ridge.onnx holds the LSTM
    # graph and lstm.onnx the Ridge graph
    client = TestClient(create_app(make_settings(store=unrunnable_store)))
    # WHEN health and a prediction are asked for
    health = client.get("/health")
    predict = client.post("/predict/MSFT")
    # THEN health is 503 and names the model and why; predictions are 503, not 500
    assert health.status_code == 503, health.text
    detail = health.json()["bundle"]["detail"]
    assert re.search(r"model (ridge|lstm) cannot run: the manifest wants", detail), detail
    assert predict.status_code == 503 and predict.json()["error"]["code"] == "model_unavailable"
    assert "cannot run" in predict.json()["error"]["message"]


# ------------------------------------------------------------------ body limit and echoes


def test_a_body_over_the_limit_is_413_and_small(client: TestClient) -> None:
    # GIVEN a 10 MB model name (the default limit is 16 KiB)
    huge = {"models": ["A" * 10_000_000]}
    # WHEN it is posted with its Content-Length
    r = client.post("/predict/MSFT", json=huge)
    # THEN 413 with a short JSON error, not the input echoed back
    assert r.status_code == 413, r.text[:200]
    assert r.json()["error"]["code"] == "payload_too_large"
    assert r.json()["error"]["request_id"] == r.headers["x-request-id"]
    assert len(r.content) < 500


def test_a_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    # GIVEN a body sent without Content-Length (chunked), larger than the limit
    def chunks() -> Iterator[bytes]:
        yield b'{"models": ["'
        for _ in range(100):
            yield b"A" * 1000
        yield b'"]}'

    # WHEN it is posted
    r = client.post("/predict/MSFT", content=chunks(), headers={"Content-Type": "application/json"})
    # THEN it is counted as it is read and refused
    assert r.status_code == 413, r.text[:200]
    assert r.json()["error"]["code"] == "payload_too_large"


def test_the_limit_is_exact(make_settings: Callable[..., Settings]) -> None:
    # GIVEN a 40-byte limit
    client = TestClient(create_app(make_settings(max_body_bytes=40)))
    body = b'{"days": 2, "models": ["ridge"]}'  # 32 bytes
    padded = body[:-1] + b" " * (40 - len(body)) + b"}"
    headers = {"Content-Type": "application/json"}
    # THEN a body of exactly 40 bytes is served and one of 41 is refused
    assert client.post("/predict/MSFT", content=padded, headers=headers).status_code == 200
    over = client.post("/predict/MSFT", content=padded + b" ", headers=headers)
    assert over.status_code == 413


@pytest.mark.parametrize(
    "body",
    [
        {"models": ["m" * 5000]},  # a long model name
        {"days": 1, "x" * 5000: 1},  # an unknown field with a long name
        {"models": [chr(ord("a") + i) * 64 for i in range(16)]},  # 16 unknown models
    ],
)
def test_errors_echo_input_clipped(client: TestClient, body: dict) -> None:
    # WHEN a body under the size limit carries long strings the API must refuse
    r = client.post("/predict/MSFT", json=body)
    # THEN 422, and the error quotes no more than a clipped piece of them
    assert r.status_code == 422, r.text[:300]
    assert r.json()["error"]["code"] == "invalid_request"
    assert len(r.content) < 1000, r.text[:300]


def test_a_long_unknown_field_name_is_clipped_with_its_length(client: TestClient) -> None:
    r = client.post("/predict/MSFT", json={"x" * 5000: 1})
    locs = [part for d in r.json()["error"]["details"] for part in d["loc"]]
    assert any(part.endswith("...(5000 chars)") and len(part) < 100 for part in locs), locs


# ------------------------------------------------------------------ the schema


def test_schema_days_and_models_are_the_bundles(
    client: TestClient, serving_bundle: BuiltBundle
) -> None:
    horizon = serving_bundle.manifest.horizon
    # GIVEN the served OpenAPI schema
    schema = client.get("/openapi.json").json()
    request = schema["components"]["schemas"]["PredictionRequest"]["properties"]
    days = [b for b in request["days"].get("anyOf", [request["days"]]) if "maximum" in b]
    items = [b["items"] for b in request["models"]["anyOf"] if b.get("type") == "array"]
    plot = next(
        p for p in schema["paths"]["/plot/{symbol}"]["get"]["parameters"] if p["name"] == "days"
    )
    plot_max = [
        b["maximum"] for b in plot["schema"].get("anyOf", [plot["schema"]]) if "maximum" in b
    ]
    # THEN days goes up to the bundle's horizon, models are the bundle's
    assert [b["maximum"] for b in days] == [horizon] and plot_max == [horizon]
    assert sorted(items[0]["enum"]) == ["ensemble", "lstm", "ridge"]
    # AND that is what is served: the maximum is accepted, one more is refused
    assert client.post("/predict/MSFT", json={"days": horizon}).status_code == 200
    assert client.post("/predict/MSFT", json={"days": horizon + 1}).status_code == 422
    assert client.get("/plot/MSFT", params={"days": horizon + 1}).status_code == 422


def test_schema_declares_the_key_only_when_one_is_set(
    client: TestClient, make_settings: Callable[..., Settings]
) -> None:
    # GIVEN the app without a key, and one with a key
    off = client.get("/openapi.json").json()
    on = TestClient(create_app(make_settings(api_key=API_KEY))).get("/openapi.json").json()
    # THEN only the second declares the X-API-Key scheme and asks for it on the data routes
    assert "securitySchemes" not in off.get("components", {})
    assert not any("security" in op for ops in off["paths"].values() for op in ops.values())
    schemes = on["components"]["securitySchemes"]
    assert [s["name"] for s in schemes.values()] == ["X-API-Key"]
    assert on["paths"]["/predict/{symbol}"]["post"]["security"]
    assert "security" not in on["paths"]["/health"]["get"]


# ------------------------------------------------------------------ the rate limit's client


def limited(make_settings: Callable[..., Settings], peer: str, **api: object) -> TestClient:
    """An app limited to 2 requests a minute per client, called from address ``peer``."""
    app = create_app(make_settings(rate_limit_per_minute=2, **api))
    return TestClient(app, client=(peer, 40000))


def statuses(client: TestClient, forwarded: list[str]) -> list[int]:
    return [client.get("/symbols", headers={"X-Forwarded-For": f}).status_code for f in forwarded]


def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    make_settings: Callable[..., Settings],
) -> None:
    # GIVEN no trusted proxy, and a caller that writes a new X-Forwarded-For each time
    client = limited(make_settings, "192.0.2.50")
    # THEN the limit holds: the header opens no new bucket
    assert statuses(client, ["198.51.100.1", "198.51.100.2", "198.51.100.3"]) == [200, 200, 429]


def test_forwarded_for_from_a_trusted_proxy_names_the_client(
    make_settings: Callable[..., Settings],
) -> None:
    # GIVEN requests arriving through a trusted proxy (10.0.0.0/8)
    client = limited(make_settings, "10.1.2.3", trusted_proxies=["10.0.0.0/8"])
    # WHEN two clients call through it
    first = statuses(client, ["198.51.100.1", "198.51.100.1", "198.51.100.1"])
    other = statuses(client, ["198.51.100.2"])
    # THEN each has its own bucket
    assert first == [200, 200, 429] and other == [200]
    # AND a client cannot escape by prepending an address: the nearest untrusted hop counts,
    # through one proxy or two
    assert statuses(client, ["203.0.113.9, 198.51.100.1"]) == [429]
    assert statuses(client, ["203.0.113.9, 198.51.100.1, 10.9.9.9"]) == [429]


# ------------------------------------------------------------------ how old the data is


def test_forecasts_say_how_old_their_data_is(
    client: TestClient, serving_bundle: BuiltBundle
) -> None:
    f = serving_bundle.features
    last = f[f["symbol"] == "MSFT"]["date"].max().date()
    # WHEN MSFT (embedded data ending in 2017) is predicted and plotted
    before = sessions_since(last)
    predict = client.post("/predict/MSFT", json={"days": 2}).json()
    plot = client.get("/plot/MSFT", params={"days": 2, "history": 5}).json()
    after = sessions_since(last)
    # THEN both say how many sessions have closed since its last date, and that it is stale
    for body in (predict, plot):
        assert body["data_age_sessions"] in {before, after} and body["data_age_sessions"] > 1000
        assert body["stale"] is True
    # AND /symbols agrees
    listed = {s["symbol"]: s for s in client.get("/symbols").json()["symbols"]}
    assert listed["MSFT"]["age_sessions"] == predict["data_age_sessions"]


def test_stale_data_can_be_refused(make_settings: Callable[..., Settings]) -> None:
    # GIVEN an app configured to refuse stale features (more than 5 sessions old)
    client = TestClient(create_app(make_settings(refuse_stale=True)))
    # WHEN the 2017 features of MSFT would serve a forecast
    predict = client.post("/predict/MSFT")
    plot = client.get("/plot/MSFT")
    # THEN 503 stale_features, saying how old they are
    for r in (predict, plot):
        assert r.status_code == 503, r.text
        error = r.json()["error"]
        assert error["code"] == "stale_features" and "sessions ago" in error["message"]
    # AND the listing still answers (it says which symbols are stale)
    assert client.get("/symbols").status_code == 200
    # AND with a tolerance above their age they are served, not stale
    lenient = TestClient(
        create_app(make_settings(refuse_stale=True, max_feature_age_sessions=1_000_000))
    )
    body = lenient.post("/predict/MSFT").json()
    assert body["stale"] is False and body["data_age_sessions"] > 1000
