"""Session fixtures of the dashboard tests: the real API, served by ``stockml serve`` on loopback.

The API serves the session's real bundle (``utils.api_fixtures``) from the session's
moto_server, with an API key, so the dashboard is tested exactly as it runs: over HTTP.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from stockml.local import free_port, wait_http
from stockml.settings import StoreSettings
from utils.api_fixtures import API_KEY


@pytest.fixture(scope="session")
def api_url(
    serving_store: StoreSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The base URL of ``stockml serve`` on a free loopback port (key ``API_KEY``)."""
    yield from _serve(serving_store, tmp_path_factory)


@pytest.fixture(scope="session")
def universe_api_url(
    universe_store: StoreSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``stockml serve`` over the global (universe) bundle's store: it serves /rankings."""
    yield from _serve(universe_store, tmp_path_factory)


def _serve(store: StoreSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("dashboard-api") / "serve.log"
    env = {
        **os.environ,
        "STOCKML_STORE__BUCKET": store.bucket,
        "STOCKML_STORE__ENDPOINT_URL": str(store.endpoint_url),
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
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.fixture
def dashboard_env(api_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The environment a hosted dashboard gets: the API's URL and key. Returns the URL."""
    monkeypatch.setenv("STOCKML_DASHBOARD__API_URL", api_url)
    monkeypatch.setenv("STOCKML_API_KEY", API_KEY)
    return api_url
