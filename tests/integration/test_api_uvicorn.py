"""The API under real uvicorn (``stockml serve``), over HTTP with httpx."""

from __future__ import annotations

import json
import os
import socket
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
from utils.universe_bundle import DELISTED, UNTRAINED

pytestmark = pytest.mark.integration
KEY = {"X-API-Key": API_KEY}


def serve(
    store: StoreSettings, log: Path, api_key: str | None = API_KEY, **env: str
) -> Iterator[tuple[str, Path]]:
    """``stockml serve`` on a free 127.0.0.1 port; yields (base URL, log file)."""
    port = free_port()
    env = {
        **os.environ,
        "STOCKML_STORE__BUCKET": store.bucket,
        "STOCKML_STORE__ENDPOINT_URL": str(store.endpoint_url),
        "STOCKML_API__RATE_LIMIT_PER_MINUTE": "0",
        **env,
    }
    env.pop("STOCKML_API_KEY", None)
    if api_key is not None:
        env["STOCKML_API_KEY"] = api_key
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
def server(
    serving_store: StoreSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """The API with a key, no rate limit."""
    yield from serve(serving_store, tmp_path_factory.mktemp("serve") / "serve.log")


@pytest.fixture(scope="module")
def limited_server(
    serving_store: StoreSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """The API without a key (limited per client IP, 3 a minute), trusting one proxy:
    127.0.0.2 (a second loopback address, so a test can call both as a proxy and not)."""
    yield from serve(
        serving_store,
        tmp_path_factory.mktemp("serve") / "limited.log",
        api_key=None,
        STOCKML_API__RATE_LIMIT_PER_MINUTE="3",
        STOCKML_API__TRUSTED_PROXIES='["127.0.0.2"]',
    )


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
    # the embedded data ends in 2017: the answer says it is stale, and by how much
    assert body["stale"] is True and body["data_age_sessions"] > 1000
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


# ---------------------------------------------------------------------------- API edges


def raw_post(url: str, head: dict[str, str], body: bytes, timeout_s: float = 10) -> bytes:
    """Send a request line, ``head`` and only ``body`` (whatever length ``head`` declares) on
    a raw socket, and return what the server answers before ``timeout_s``."""
    parsed = httpx.URL(url)
    with socket.create_connection((parsed.host, parsed.port), timeout=timeout_s) as conn:
        lines = [f"POST {parsed.raw_path.decode()} HTTP/1.1", f"Host: {parsed.host}"]
        lines += [f"{k}: {v}" for k, v in head.items()]
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pass
    return answer


def test_a_declared_oversized_body_is_refused_before_it_is_sent(server: tuple[str, Path]) -> None:
    # GIVEN a request declaring a 10 MB body, of which only the first kilobyte is sent
    head = {"Content-Type": "application/json", "Content-Length": "10000000", **KEY}
    # WHEN the server answers (it must not wait for the other 9.999 MB)
    answer = raw_post(server[0] + "/predict/MSFT", head, b'{"models": ["' + b"A" * 1000)
    # THEN 413 with a short JSON error
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413"), answer[:300]
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["error"]["code"] == "payload_too_large"


def test_oversized_bodies_get_413_over_http(client: httpx.Client) -> None:
    # GIVEN a 10 MB model name, sent whole with its length, then chunked without one
    payload = json.dumps({"models": ["A" * 10_000_000]}).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, 200_000, 10_000):
            yield payload[i : i + 10_000]

    headers = {**KEY, "Content-Type": "application/json"}
    for content in (payload, chunks()):
        # WHEN it is posted by an ordinary client
        r = client.post("/predict/MSFT", content=content, headers=headers)
        # THEN the client reads a 413 (the server discards the rest), not a 10 MB echo
        assert r.status_code == 413, r.text[:200]
        assert r.json()["error"]["code"] == "payload_too_large" and len(r.content) < 500


def _symbols(url: str, forwarded: str, local_address: str) -> int:
    transport = httpx.HTTPTransport(local_address=local_address)
    with httpx.Client(base_url=url, transport=transport, timeout=30) as c:
        return c.get("/symbols", headers={"X-Forwarded-For": forwarded}).status_code


def test_forwarded_for_is_believed_from_configured_proxies_only(
    limited_server: tuple[str, Path],
) -> None:
    url = limited_server[0]
    # GIVEN a loopback client that is not a configured proxy (127.0.0.1), writing a new
    # X-Forwarded-For on every request
    direct = [_symbols(url, f"198.51.100.{i}", "127.0.0.1") for i in range(4)]
    # THEN the limit (3 a minute) holds: the header is not believed (uvicorn's own default
    # would believe it from any loopback client)
    assert direct == [200, 200, 200, 429]
    # AND through the configured proxy (127.0.0.2), each forwarded client has its own bucket
    proxied = [_symbols(url, "203.0.113.5", "127.0.0.2") for _ in range(4)]
    assert proxied == [200, 200, 200, 429]
    assert _symbols(url, "203.0.113.6", "127.0.0.2") == 200
    # AND prepending an address does not escape the bucket of the address the proxy saw
    assert _symbols(url, "192.0.2.1, 203.0.113.5", "127.0.0.2") == 429


def test_a_global_bundle_ranks_and_predicts_an_untrained_symbol_over_http(
    universe_api_url: str, universe_bundle: BuiltBundle
) -> None:
    # GIVEN `stockml serve` over a global bundle, and a stock with features it never trained on
    assert UNTRAINED not in universe_bundle.manifest.symbols
    # WHEN the ranking and that stock's forecast are asked for over HTTP
    ranked = httpx.get(f"{universe_api_url}/rankings", params={"horizon": 1}, headers=KEY)
    predicted = httpx.post(
        f"{universe_api_url}/predict/{UNTRAINED}", json={"days": 2}, headers=KEY, timeout=30
    )
    # THEN both answer: the whole current universe ranked (the untrained stock included, the
    # one that stopped trading left out), and a forecast for the untrained stock
    assert ranked.status_code == 200, ranked.text
    body = ranked.json()
    symbols = [r["symbol"] for r in body["rankings"]]
    assert len(symbols) == body["n_ranked"] == 24 and UNTRAINED in symbols
    assert DELISTED not in symbols
    assert predicted.status_code == 200, predicted.text
    assert all(len(v) == 2 for v in predicted.json()["predictions"].values())
