"""Session fixtures of the prediction API tests: one real bundle, one store holding it.

Registered from ``tests/conftest.py`` (``pytest_plugins``) so that unit, functional and
integration tests share ONE bundle build (~8 s: torch import and ONNX export) per session.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

from stockml.local import LocalServer
from stockml.settings import ApiSettings, Settings, StoreSettings
from stockml.storage import Store
from utils.monitoring import replay_and_monitor
from utils.serving_bundle import BuiltBundle, build_bundle, publish, swapped_graphs
from utils.universe_bundle import build_universe_bundle

API_KEY = "local-test-key"  # the key the events in events/api_*.json carry
# the endpoints with an event in events/api_<name>_v1.json and _v2.json, each answered 200
ENDPOINTS = [
    "root",
    "health",
    "version",
    "symbols",
    "predict",
    "plot",
    "metrics",
    "metrics_prom",
    "monitoring",
]


@pytest.fixture(scope="session")
def serving_bundle(tmp_path_factory: pytest.TempPathFactory) -> BuiltBundle:
    """A real bundle (Ridge via skl2onnx + tiny LSTM via torch.onnx) on a local folder."""
    return build_bundle(tmp_path_factory.mktemp("bundle") / "v-test-1")


def new_bucket(server: LocalServer) -> StoreSettings:
    bucket = f"api-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=server.url, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    return StoreSettings(bucket=bucket, endpoint_url=server.url)


@pytest.fixture(scope="session")
def serving_store(moto_server: LocalServer, serving_bundle: BuiltBundle) -> StoreSettings:
    """A bucket on the session's moto_server with the bundle, its champion pointer, features,
    and what the monitor published after MSFT's last 70 sessions were served (``/monitoring``,
    the live block of ``/metrics``)."""
    store_settings = new_bucket(moto_server)
    publish(Store.from_settings(store_settings), serving_bundle)
    replay_and_monitor(Settings(store=store_settings), serving_bundle)
    return store_settings


@pytest.fixture(scope="session")
def universe_bundle(tmp_path_factory: pytest.TempPathFactory) -> BuiltBundle:
    """A real global bundle trained in universe mode on 24 synthetic stocks (~5-20 s)."""
    return build_universe_bundle(tmp_path_factory.mktemp("universe"))


@pytest.fixture(scope="session")
def universe_store(moto_server: LocalServer, universe_bundle: BuiltBundle) -> StoreSettings:
    """A bucket with the global bundle as champion, 25 stocks' features, their windows and the
    universe object (written by the feature pipeline's ``write_windows``)."""
    store_settings = new_bucket(moto_server)
    publish(Store.from_settings(store_settings), universe_bundle)
    return store_settings


@pytest.fixture(scope="session")
def make_settings(serving_store: StoreSettings) -> Callable[..., Settings]:
    """``make_settings(api_key=None, **api)``: Settings on the serving store; rate limit off by default."""

    def make(
        api_key: str | None = None, store: StoreSettings | None = None, **api: object
    ) -> Settings:
        api = {"rate_limit_per_minute": 0, **api}
        return Settings(
            store=store or serving_store, api=ApiSettings(**api), **{"STOCKML_API_KEY": api_key}
        )

    return make


@pytest.fixture
def corrupt_store(
    moto_server: LocalServer, serving_bundle: BuiltBundle, tmp_path: Path
) -> StoreSettings:
    """A bucket whose champion bundle has ONE flipped byte in an ONNX file (sha256 mismatch)."""
    store_settings = new_bucket(moto_server)
    store = Store.from_settings(store_settings)
    publish(store, serving_bundle)
    key = f"{store.models_prefix}/{serving_bundle.manifest.version}/ridge.onnx"
    data = bytearray(store.get_bytes(key))
    data[len(data) // 2] ^= 0xFF
    store.put_bytes(key, bytes(data))
    return store_settings


@pytest.fixture(scope="session")
def unrunnable_store(
    moto_server: LocalServer, serving_bundle: BuiltBundle, tmp_path_factory: pytest.TempPathFactory
) -> StoreSettings:
    """A bucket whose champion bundle is intact (every sha256 matches) but whose models cannot
    run: ``ridge.onnx`` holds the LSTM graph and ``lstm.onnx`` the Ridge graph."""
    store_settings = new_bucket(moto_server)
    store = Store.from_settings(store_settings)
    folder = swapped_graphs(serving_bundle, tmp_path_factory.mktemp("swapped") / "bundle")
    publish(store, BuiltBundle(folder, serving_bundle.manifest, serving_bundle.features))
    return store_settings
