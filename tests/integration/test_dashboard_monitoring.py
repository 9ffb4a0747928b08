"""The dashboard's monitoring page under Streamlit's AppTest, against the real API on loopback.

The oracle is the API's own answers (fetched here with httpx): the monitor's last run over the
serving store (MSFT's last 70 sessions served, then realised: utils.monitoring)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from streamlit.testing.v1 import AppTest

from stockml.api import create_app
from stockml.local import LocalServer, free_port, wait_http
from stockml.settings import ApiSettings, Settings
from stockml.storage import Store
from stockml_dashboard.parsing import LIVE_COLUMNS
from utils.api_fixtures import API_KEY, new_bucket
from utils.serving_bundle import BuiltBundle, publish

pytestmark = pytest.mark.integration
APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "streamlit_app.py")
PAGE = "app_pages/monitoring.py"
KEY = {"X-API-Key": API_KEY}


def run_page(page: str, **query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for name, value in query.items():
        at.query_params[name] = value
    at.switch_page(page)
    return at.run()


def figures(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_the_page_shows_live_accuracy_drift_and_freshness_from_the_api(dashboard_env: str) -> None:
    # GIVEN the API's monitoring status and MSFT's live figures
    monitoring = httpx.get(f"{dashboard_env}/monitoring", headers=KEY).json()
    live = httpx.get(f"{dashboard_env}/metrics/MSFT", headers=KEY).json()["live"]
    # WHEN the monitoring page opens on MSFT
    at = run_page(PAGE, symbol="MSFT")
    # THEN it shows the run, the model and the retraining decision the API reports
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Last run"] == monitoring["run_date"] == "2017-11-10"
    assert metrics["Model"] == monitoring["model_version"]
    assert metrics["Stale symbols"] == str(len(monitoring["freshness"]["stale"]))
    assert [w.value for w in at.warning][0].startswith("Retraining")
    assert [m.value for m in at.markdown][: len(monitoring["retrain"]["reasons"])] == [
        f"- {r}" for r in monitoring["retrain"]["reasons"]
    ]
    # AND the live table at horizon 1 is the API's figures, every model and baseline
    table = at.dataframe[0].value.set_index("model")
    assert set(table.index) == set(live["models"])
    ratio = next(c for c in LIVE_COLUMNS if c.key == "rmse_ratio_vs_naive")
    coverage = next(c for c in LIVE_COLUMNS if c.key == "interval_coverage")
    for name, horizons in live["models"].items():
        assert table.loc[name, ratio.label] == format(
            horizons["1"]["rmse_ratio_vs_naive"], ratio.spec
        )
    assert table.loc["ensemble", coverage.label] == format(
        live["models"]["ensemble"]["1"]["interval_coverage"], coverage.spec
    )
    # AND the accuracy-over-time chart draws the API's series
    charts = figures(at)
    over_time = {
        (t["meta"]["model"], t["meta"]["series"]): t
        for t in charts[0]["data"]
        if t.get("meta", {}).get("role") == "live"
    }
    expected = live["series"]["ensemble"]["1"]
    trace = over_time[("ensemble", "rmse_ratio_vs_naive")]
    assert trace["x"] == expected["dates"]
    assert trace["y"] == pytest.approx(expected["rmse_ratio_vs_naive"])
    assert over_time[("lstm", "interval_coverage")]["y"] == pytest.approx(
        live["series"]["lstm"]["1"]["interval_coverage"]
    )
    # AND the drift chart shows every feature's PSI beside its threshold, highest first
    psi = next(t for t in charts[1]["data"] if t["meta"]["role"] == "psi")
    features = sorted(monitoring["drift"]["features"].items(), key=lambda kv: -kv[1]["psi"])
    assert psi["y"] == [name for name, _ in features[:20]]
    assert psi["x"] == pytest.approx([f["psi"] for _, f in features[:20]])
    # AND the freshness table is the API's
    fresh = at.dataframe[1].value
    assert fresh["symbol"].tolist() == list(monitoring["freshness"]["symbols"])
    assert fresh["last bar"].tolist() == [
        s["last_date"] for s in monitoring["freshness"]["symbols"].values()
    ]


@pytest.fixture
def unmonitored_api(
    moto_server: LocalServer, serving_bundle: BuiltBundle, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The real API (uvicorn, in a thread) over a store where the monitor never ran."""
    store_settings = new_bucket(moto_server)
    publish(Store.from_settings(store_settings), serving_bundle)
    settings = Settings(store=store_settings, api=ApiSettings(rate_limit_per_minute=0))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health", timeout_s=60)
    monkeypatch.setenv("STOCKML_DASHBOARD__API_URL", url)
    monkeypatch.setenv("STOCKML_API_KEY", API_KEY)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_the_page_says_when_the_monitor_has_not_run(unmonitored_api: str) -> None:
    answer = httpx.get(f"{unmonitored_api}/monitoring", headers=KEY)
    assert answer.status_code == 503
    at = run_page(PAGE)
    assert not at.exception and not at.error
    assert at.info[0].value.startswith("No monitoring yet: the monitor has not run")
    assert answer.json()["error"]["message"] in at.info[0].value
    assert not at.get("plotly_chart")
