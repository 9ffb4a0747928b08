"""What the API adds for charts: raw bars in ``/plot``, the gate and the backtest in ``/metrics``."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from stockml.api import create_app
from stockml.api.routes.models import _bundle_extras
from stockml.local import LocalServer
from stockml.settings import Settings
from stockml.storage import Store
from utils.api_fixtures import new_bucket
from utils.serving_bundle import BuiltBundle, publish

pytestmark = pytest.mark.integration  # the store is a real moto_server


@pytest.fixture(scope="module")
def client(make_settings: Callable[..., Settings]) -> TestClient:
    return TestClient(create_app(make_settings()), raise_server_exceptions=False)


def test_plot_history_carries_the_raw_bars(client: TestClient, serving_bundle: BuiltBundle) -> None:
    # GIVEN the raw bars the bundle's features were computed from (stored under raw/)
    bars = serving_bundle.bars
    assert bars is not None
    msft = bars[bars["symbol"] == "MSFT"].sort_values("date").tail(40)
    # WHEN the chart data of the last 40 sessions is asked for
    history = client.get("/plot/MSFT", params={"history": 40}).json()["history"]
    # THEN each point is that session's raw open, high, low, close and volume
    assert [p["date"] for p in history] == [d.date().isoformat() for d in msft["date"]]
    for field in ("open", "high", "low", "close", "volume"):
        assert [p[field] for p in history] == pytest.approx(msft[field].tolist(), rel=1e-12)


def test_plot_history_without_stored_bars_has_closes_only(
    moto_server: LocalServer, serving_bundle: BuiltBundle, make_settings: Callable[..., Settings]
) -> None:
    # GIVEN a store whose feature windows were written without raw bars (as before they existed)
    store_settings = new_bucket(moto_server)
    publish(Store.from_settings(store_settings), dataclasses.replace(serving_bundle, bars=None))
    client = TestClient(create_app(make_settings(store=store_settings)))
    # WHEN the chart data is asked for
    history = client.get("/plot/MSFT", params={"history": 5}).json()["history"]
    # THEN the closes are there and the bar fields are null, not an error
    assert len(history) == 5 and all(p["close"] > 0 for p in history)
    assert all(p[f] is None for p in history for f in ("open", "high", "low", "volume"))


def test_metrics_carry_the_bundles_gate_and_equity_curve(
    client: TestClient, serving_bundle: BuiltBundle
) -> None:
    # GIVEN what training recorded in the bundle's metrics.json
    recorded = json.loads((serving_bundle.folder / "metrics.json").read_text())
    # WHEN /metrics is asked
    body = client.get("/metrics/MSFT").json()
    # THEN the gate is passed through as recorded and the equity curve is the bundle's
    assert body["gate"] == recorded["gate"]
    assert body["equity_curve"]["dates"] == recorded["equity_curve"]["dates"]
    assert body["equity_curve"]["strategy"] == pytest.approx(recorded["equity_curve"]["strategy"])
    assert body["equity_curve"]["model"] == "ensemble"


def test_a_bundle_without_or_with_a_broken_extra_still_answers() -> None:
    assert _bundle_extras({}) == {"gate": None, "equity_curve": None}
    broken = _bundle_extras({"gate": "yes", "equity_curve": {"dates": ["x"], "strategy": 1}})
    assert broken == {"gate": None, "equity_curve": None}
