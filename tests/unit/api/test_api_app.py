"""The FastAPI app in-process (Starlette TestClient): every endpoint, errors, key, limit, CORS."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from stockml import calendar
from stockml.api import create_app
from stockml.s3 import S3Reader
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


def test_every_endpoint_answers(client: TestClient, serving_bundle: BuiltBundle) -> None:
    version = serving_bundle.manifest.version
    # GIVEN the app over the serving store; WHEN each endpoint is called; THEN it answers 200
    info = client.get("/")
    assert info.status_code == 200 and "/predict/{symbol}" in info.json()["endpoints"]
    health = client.get("/health").json()
    assert health == {
        "status": "ok",
        "bundle": {"ok": True, "detail": None, "version": version},
        "store": {"ok": True, "detail": None, "version": None},
    }
    assert client.get("/version").json()["model_version"] == version
    assert [s["symbol"] for s in client.get("/symbols").json()["symbols"]] == ["MSFT", "^GSPC"]
    metrics = client.get("/metrics/MSFT").json()
    assert metrics["scope"] == "symbol" and set(metrics["models"]) == {"ridge", "lstm", "ensemble"}
    assert metrics["baselines"]["naive"]["rmse_ratio_vs_naive"] == pytest.approx(1.0)
    prom = client.get("/metrics-prom").text
    assert 'stockml_requests_total{method="GET",route="/health",status="200"} 1' in prom


def test_predict_keeps_the_design_contract(client: TestClient, serving_bundle: BuiltBundle) -> None:
    # GIVEN the stored features of MSFT
    f = serving_bundle.features
    last = f[f["symbol"] == "MSFT"].iloc[-1]
    # WHEN predicting 3 days with the default models
    r = client.post("/predict/MSFT", json={"days": 3})
    # THEN the body has the original fields and the extras, consistent with each other
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["symbol"] == "MSFT" and set(body["predictions"]) == {"ridge", "lstm", "ensemble"}
    assert all(len(v) == 3 for v in body["predictions"].values())
    assert set(body["metrics"]["ridge"]) >= {"rmse", "rmse_ratio_vs_naive", "directional_accuracy"}
    assert body["last_close"] == pytest.approx(float(last["close"]))
    assert body["last_date"] == str(last["date"].date())
    assert body["dates"] == [str(d.date()) for d in calendar.next_sessions(last["date"], 3)]
    band = body["intervals"]["ensemble"]
    assert all(
        lo < p < hi
        for lo, p, hi in zip(
            band["lower"], body["predictions"]["ensemble"], band["upper"], strict=True
        )
    )
    assert r.headers["x-request-id"]
    # AND models can be chosen; no body means days=1 and every model
    one = client.post("/predict/MSFT", json={"models": ["ridge"], "days": 2}).json()
    assert (
        list(one["predictions"]) == ["ridge"]
        and one["predictions"]["ridge"] == body["predictions"]["ridge"][:2]
    )
    assert all(len(v) == 1 for v in client.post("/predict/MSFT").json()["predictions"].values())


def test_plot_gives_chart_data(client: TestClient) -> None:
    r = client.get("/plot/%5EGSPC", params={"days": 4, "history": 30})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["symbol"] == "^GSPC" and len(body["history"]) == 30 and len(body["dates"]) == 4
    assert body["history"][-1]["date"] < body["dates"][0]
    assert set(body["intervals"]) == {"ridge", "lstm", "ensemble"}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("post", "/predict/msft", {}, 422, "invalid_request"),  # lower case: bad pattern
        ("post", "/predict/TOO-LONG-SYMBOL", {}, 422, "invalid_request"),
        ("post", "/predict/AAPL", {}, 404, "unknown_symbol"),
        ("get", "/metrics/AAPL", {}, 404, "unknown_symbol"),
        ("post", "/predict/MSFT", {"json": {"days": 0}}, 422, "invalid_request"),
        ("post", "/predict/MSFT", {"json": {"days": 6}}, 422, "invalid_request"),  # > H = 5
        ("post", "/predict/MSFT", {"json": {"days": 31}}, 422, "invalid_request"),
        ("post", "/predict/MSFT", {"json": {"models": ["prophet"]}}, 422, "invalid_request"),
        ("post", "/predict/MSFT", {"json": {"day": 2}}, 422, "invalid_request"),  # unknown field
        (
            "post",
            "/predict/MSFT",
            {"content": b'{"days": 2', "headers": {"Content-Type": "application/json"}},
            422,
            "invalid_request",
        ),
        (
            "post",
            "/predict/MSFT",
            {"content": b"\xff\xfe", "headers": {"Content-Type": "application/json"}},
            422,
            "invalid_request",
        ),
        ("get", "/plot/MSFT", {"params": {"history": 0}}, 422, "invalid_request"),
        ("get", "/nowhere", {}, 404, "not_found"),
        ("delete", "/predict/MSFT", {}, 405, "method_not_allowed"),
    ],
)
def test_bad_inputs_get_json_errors(
    client: TestClient, method: str, path: str, kwargs: dict, status: int, code: str
) -> None:
    # WHEN a bad request is sent
    r = getattr(client, method)(path, **kwargs)
    # THEN the status and a JSON error body, with no traceback
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["request_id"] == r.headers["x-request-id"]
    assert "Traceback" not in r.text


def test_api_key_on(make_settings: Callable[..., Settings]) -> None:
    # GIVEN an app with STOCKML_API_KEY set
    client = TestClient(create_app(make_settings(api_key=API_KEY)))
    # THEN data routes need the key; info routes stay open for health checks
    assert client.post("/predict/MSFT").status_code == 401
    wrong = client.get("/symbols", headers={"X-API-Key": API_KEY + "x"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    assert client.get("/metrics-prom").status_code == 401
    assert client.post("/predict/MSFT", headers={"X-API-Key": API_KEY}).status_code == 200
    assert client.get("/health").status_code == 200


def test_api_key_off(client: TestClient) -> None:
    # the module's app has no key configured: a stray header is ignored
    assert client.get("/symbols").status_code == 200
    assert client.get("/symbols", headers={"X-API-Key": "anything"}).status_code == 200


def test_rate_limit_answers_429_with_retry_after(make_settings: Callable[..., Settings]) -> None:
    # GIVEN a limit of 3 requests per minute
    client = TestClient(create_app(make_settings(rate_limit_per_minute=3)))
    # WHEN one caller sends 4 requests
    statuses = [client.get("/symbols").status_code for _ in range(4)]
    # THEN the 4th is refused with Retry-After (one token comes back after 20 s)
    assert statuses == [200, 200, 200, 429]
    refused = client.get("/symbols")
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 20
    # AND a made-up key header opens no new bucket while keys are off (no bypass)
    assert client.get("/symbols", headers={"X-API-Key": "other"}).status_code == 429
    # AND health is not limited
    assert client.get("/health").status_code == 200


def test_rate_limit_is_per_api_key(make_settings: Callable[..., Settings]) -> None:
    # GIVEN keys on and a limit of 2 per minute
    client = TestClient(create_app(make_settings(api_key=API_KEY, rate_limit_per_minute=2)))
    key = {"X-API-Key": API_KEY}
    # WHEN the key's bucket is empty
    assert [client.get("/symbols", headers=key).status_code for _ in range(3)] == [200, 200, 429]
    # THEN a caller without the key is told 401 (auth first), not 429
    assert client.get("/symbols").status_code == 401


def test_cors_allows_configured_origins_only(make_settings: Callable[..., Settings]) -> None:
    client = TestClient(create_app(make_settings(cors_origins=["http://localhost:8501"])))
    preflight = {"Access-Control-Request-Method": "POST"}
    ok = client.options("/predict/MSFT", headers={"Origin": "http://localhost:8501", **preflight})
    assert ok.headers["access-control-allow-origin"] == "http://localhost:8501"
    bad = client.options("/predict/MSFT", headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in bad.headers


def test_corrupt_bundle_gives_503_and_health_says_why(
    make_settings: Callable[..., Settings], corrupt_store: StoreSettings
) -> None:
    # GIVEN a champion bundle with one flipped byte
    client = TestClient(create_app(make_settings(store=corrupt_store)))
    # WHEN health and a prediction are asked for
    health = client.get("/health")
    predict = client.post("/predict/MSFT")
    # THEN both are 503 with the sha256 reason; the app itself is up
    assert health.status_code == 503
    assert (
        health.json()["status"] == "unavailable" and "sha256" in health.json()["bundle"]["detail"]
    )
    assert predict.status_code == 503 and predict.json()["error"]["code"] == "model_unavailable"
    assert "sha256" in predict.json()["error"]["message"]
    assert client.get("/").status_code == 200


def test_unreachable_store_is_reported(
    make_settings: Callable[..., Settings], serving_store: StoreSettings
) -> None:
    # GIVEN a loaded app whose store then points at a dead port
    app = create_app(make_settings())
    app.state.serving.service.features.reader = S3Reader(
        serving_store.bucket, "http://127.0.0.1:9", timeout_s=1
    )
    # THEN health is 503 with the store's reason
    health = TestClient(app).get("/health")
    assert health.status_code == 503 and health.json()["store"]["ok"] is False
