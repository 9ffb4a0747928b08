"""The API under real uvicorn (``stockml serve``), over HTTP with httpx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stockml.local import free_port, wait_http
from stockml.settings import StoreSettings
from utils.api_fixtures import API_KEY
from utils.serving_bundle import BuiltBundle

pytestmark = pytest.mark.integration
KEY = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def server(
    serving_store: StoreSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """``stockml serve`` on a free loopback port, API key on; yields (base URL, log file)."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {
        **os.environ,
        "STOCKML_STORE__BUCKET": serving_store.bucket,
        "STOCKML_STORE__ENDPOINT_URL": str(serving_store.endpoint_url),
        "STOCKML_API_KEY": API_KEY,
        "STOCKML_API__RATE_LIMIT_PER_MINUTE": "0",
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - fixed argv
            [sys.executable, "-m", "stockml.cli", "serve", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health", timeout_s=90, process=process)
        yield url, log
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.fixture(scope="module")
def client(server: tuple[str, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[0], timeout=30) as c:
        yield c


def test_every_endpoint_over_http(client: httpx.Client, serving_bundle: BuiltBundle) -> None:
    version = serving_bundle.manifest.version
    # GIVEN the server with a key; WHEN every endpoint is called with it; THEN 200 and content
    assert client.get("/").json()["name"] == "stockml prediction API"
    assert client.get("/health").json()["bundle"]["version"] == version
    assert client.get("/version").json()["model_version"] == version
    assert {s["symbol"] for s in client.get("/symbols", headers=KEY).json()["symbols"]} == {
        "MSFT",
        "^GSPC",
    }
    predict = client.post(
        "/predict/%5EGSPC", json={"days": 5, "models": ["ensemble", "lstm"]}, headers=KEY
    )
    assert predict.status_code == 200, predict.text
    body = predict.json()
    assert body["symbol"] == "^GSPC" and set(body["predictions"]) == {"ensemble", "lstm"}
    assert len(body["dates"]) == 5 and body["model_version"] == version
    plot = client.get("/plot/MSFT", params={"days": 2, "history": 10}, headers=KEY).json()
    assert len(plot["history"]) == 10 and len(plot["predictions"]["ridge"]) == 2
    assert client.get("/metrics/MSFT", headers=KEY).json()["scope"] == "symbol"
    assert "stockml_request_seconds_bucket" in client.get("/metrics-prom", headers=KEY).text


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("post", "/predict/MSFT", {}, 401),  # no key
        ("post", "/predict/ms$ft", {"headers": KEY}, 422),
        ("post", "/predict/ZZZZ", {"headers": KEY}, 404),
        ("post", "/predict/MSFT", {"headers": KEY, "json": {"days": 0}}, 422),
        ("post", "/predict/MSFT", {"headers": KEY, "json": {"days": 10}}, 422),
        (
            "post",
            "/predict/MSFT",
            {"headers": {**KEY, "Content-Type": "application/json"}, "content": b"{"},
            422,
        ),
        ("get", "/plot/MSFT", {"headers": KEY, "params": {"days": "x"}}, 422),
    ],
)
def test_bad_requests_over_http(
    client: httpx.Client, method: str, path: str, kwargs: dict, status: int
) -> None:
    r = getattr(client, method)(path, **kwargs)
    assert r.status_code == status, r.text
    assert set(r.json()["error"]) >= {"code", "message", "request_id"}


def test_access_logs_are_json_with_request_id_latency_status(
    client: httpx.Client, server: tuple[str, Path]
) -> None:
    # GIVEN a request with our own request id
    client.get("/version", headers={"X-Request-ID": "trace-abc-123"})
    # THEN the server writes one JSON access log line for it (just after the response is sent)
    deadline = time.monotonic() + 10
    while True:
        lines = [
            json.loads(line) for line in server[1].read_text().splitlines() if line.startswith("{")
        ]
        mine = [entry for entry in lines if entry.get("request_id") == "trace-abc-123"]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(mine) == 1
    assert mine[0]["status"] == 200 and mine[0]["route"] == "/version" and mine[0]["latency_ms"] > 0
