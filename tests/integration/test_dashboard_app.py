"""The dashboard's pages under Streamlit's AppTest, against the real API on loopback.

The oracles are independent of the dashboard: the API's own answers (fetched here with
httpx), the raw bars the bundle's features were built from, and the NYSE calendar.
"""

from __future__ import annotations

import json
import socket
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from stockml import calendar
from stockml.local import free_port
from stockml_dashboard.client import ApiError, request_json
from stockml_dashboard.parsing import METRIC_COLUMNS
from utils.api_fixtures import API_KEY
from utils.serving_bundle import BuiltBundle

pytestmark = pytest.mark.integration
APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "streamlit_app.py")
KEY = {"X-API-Key": API_KEY}
HISTORY = 250  # what the forecast page asks for


def run_page(page: str | None = None, **query: str) -> AppTest:
    """The app, opened on ``page`` (default: the forecast page) with ``query`` in the URL."""
    at = AppTest.from_file(APP, default_timeout=60)
    for name, value in query.items():
        at.query_params[name] = value
    if page is not None:
        at.switch_page(page)
    return at.run()


def figures(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def traces(figure: dict[str, Any], role: str) -> dict[str, dict[str, Any]]:
    return {
        t["meta"].get("model", t["meta"].get("series", role)): t
        for t in figure["data"]
        if t.get("meta", {}).get("role") == role
    }


def test_forecast_page_draws_the_api_forecast_on_exchange_sessions(
    dashboard_env: str, serving_bundle: BuiltBundle
) -> None:
    # GIVEN the API's own chart data for MSFT and the symbols it serves
    api = httpx.get(f"{dashboard_env}/plot/MSFT", params={"history": HISTORY}, headers=KEY).json()
    served = [
        s["symbol"] for s in httpx.get(f"{dashboard_env}/symbols", headers=KEY).json()["symbols"]
    ]

    # WHEN the dashboard opens on MSFT
    at = run_page(symbol="MSFT")

    # THEN it runs clean and offers the API's symbols, horizon and models
    assert not at.exception and not at.error
    assert at.title[0].value == "Forecast"
    assert at.selectbox[0].options == served and at.selectbox[0].value == "MSFT"
    horizon = len(api["dates"])
    assert at.slider[0].max == horizon and at.slider[0].value == horizon
    assert at.multiselect[0].options == list(api["predictions"])
    # AND the forecast traces hold the API's closes on the API's dates
    (figure,) = figures(at)
    forecast = traces(figure, "forecast")
    assert set(forecast) == set(api["predictions"])
    for name, trace in forecast.items():
        assert trace["x"] == api["dates"]
        assert trace["y"] == pytest.approx(api["predictions"][name], rel=1e-12)
    # AND those dates are the NYSE sessions after the last close: no weekend, no holiday
    last = date.fromisoformat(api["history"][-1]["date"])
    nyse = calendar.next_sessions(pd.Timestamp(last), horizon)
    assert forecast["ensemble"]["x"] == [d.date().isoformat() for d in nyse]
    assert all(date.fromisoformat(x).weekday() < 5 for x in forecast["ensemble"]["x"])
    # AND the candlesticks are the raw bars the bundle's features were built from
    (history,) = traces(figure, "history").values()
    bars = serving_bundle.bars
    assert bars is not None
    msft = bars[bars["symbol"] == "MSFT"].sort_values("date").tail(HISTORY)
    assert history["type"] == "candlestick"
    assert history["x"] == [d.date().isoformat() for d in msft["date"]]
    for column in ("open", "high", "low", "close"):
        assert history[column] == pytest.approx(msft[column].tolist(), rel=1e-12), column
    assert traces(figure, "volume")["volume"]["y"] == pytest.approx(msft["volume"].tolist())
    # AND the band is the ensemble's interval from the API
    band = {t["meta"]["side"]: t["y"] for t in figure["data"] if t["meta"]["role"] == "band"}
    assert band["lower"] == pytest.approx(api["intervals"]["ensemble"]["lower"])
    assert band["upper"] == pytest.approx(api["intervals"]["ensemble"]["upper"])
    # AND the table lists the same forecasts
    table = at.dataframe[0].value
    assert table["date"].tolist() == api["dates"]
    assert table["ensemble"].tolist() == [f"{v:,.2f}" for v in api["predictions"]["ensemble"]]


def test_choices_go_to_the_url_and_a_shared_url_restores_them(dashboard_env: str) -> None:
    # GIVEN the forecast page
    at = run_page(symbol="MSFT")
    # WHEN the horizon and the models are changed
    at.slider[0].set_value(2)
    at.multiselect[0].set_value(["ensemble"])
    at.run()
    # THEN the chart follows and the URL holds the choice
    (figure,) = figures(at)
    forecast = traces(figure, "forecast")
    assert list(forecast) == ["ensemble"] and len(forecast["ensemble"]["x"]) == 2
    assert at.query_params["days"] == "2" and at.query_params["models"] == "ensemble"
    # AND opening that URL gives the same view, for an index symbol too (^ in the path)
    again = run_page(symbol="^GSPC", days="2", models="ensemble")
    assert not again.exception and not again.error
    assert again.selectbox[0].value == "^GSPC" and again.slider[0].value == 2
    api = httpx.get(f"{dashboard_env}/plot/%5EGSPC", params={"days": 2}, headers=KEY).json()
    forecast = traces(figures(again)[0], "forecast")
    assert forecast["ensemble"]["y"] == pytest.approx(api["predictions"]["ensemble"], rel=1e-12)


def test_the_chosen_symbol_follows_to_another_page(dashboard_env: str) -> None:
    # GIVEN the forecast page on ^GSPC
    at = run_page(symbol="^GSPC")
    # WHEN the user moves to the comparison page (navigation clears the URL's parameters)
    for name in list(at.query_params):
        del at.query_params[name]
    at.switch_page("app_pages/comparison.py").run()
    # THEN it opens on the same symbol
    assert not at.exception and not at.error
    assert at.selectbox[0].value == "^GSPC" and at.query_params["symbol"] == "^GSPC"


def test_model_comparison_shows_the_api_metrics_gate_and_backtest(dashboard_env: str) -> None:
    # GIVEN the API's metrics for MSFT
    api = httpx.get(f"{dashboard_env}/metrics/MSFT", headers=KEY).json()
    # WHEN the comparison page opens on MSFT
    at = run_page("app_pages/comparison.py", symbol="MSFT")
    # THEN every model and baseline is a row with the API's numbers (n/a where it has none)
    assert not at.exception and not at.error
    table = at.dataframe[0].value.set_index("model")
    assert set(table.index) == set(api["models"]) | set(api["baselines"])
    ratio = next(c for c in METRIC_COLUMNS if c.key == "rmse_ratio_vs_naive")
    for name, values in {**api["models"], **api["baselines"]}.items():
        assert table.loc[name, ratio.label] == format(values["rmse_ratio_vs_naive"], ratio.spec)
    coverage = next(c for c in METRIC_COLUMNS if c.key == "directional_accuracy_always_long")
    assert set(table[coverage.label]) == {"n/a"}  # this bundle does not record it
    # AND the gate's checks and verdict are those of the bundle
    checks = at.dataframe[1].value
    assert checks["check"].tolist() == [c["name"] for c in api["gate"]["checks"]]
    verdict = at.success if api["gate"]["passed"] else at.warning
    assert any("gate" in m.value for m in verdict)
    # AND the equity curve is the bundle's backtest
    equity = traces(figures(at)[-1], "equity")
    assert equity["strategy"]["x"] == api["equity_curve"]["dates"]
    assert equity["strategy"]["y"] == pytest.approx(api["equity_curve"]["strategy"])
    assert equity["buy_and_hold"]["y"] == pytest.approx(api["equity_curve"]["buy_and_hold"])


def test_ranking_page_says_when_the_bundle_has_no_ranking(dashboard_env: str) -> None:
    # GIVEN an API whose bundle has no ranking (404)
    assert httpx.get(f"{dashboard_env}/rankings", headers=KEY).status_code == 404
    # WHEN the ranking page opens
    at = run_page("app_pages/ranking.py")
    # THEN it says so plainly: no error, no chart
    assert not at.exception and not at.error
    assert "has no ranking" in at.info[0].value
    assert not at.get("plotly_chart")


def test_ranking_page_shows_the_apis_ranking_of_a_universe_bundle(
    universe_api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the real API over a global bundle, and its own answer (the oracle)
    monkeypatch.setenv("STOCKML_DASHBOARD__API_URL", universe_api_url)
    monkeypatch.setenv("STOCKML_API_KEY", API_KEY)
    api = httpx.get(
        f"{universe_api_url}/rankings", params={"horizon": 2, "top": 3}, headers=KEY
    ).json()
    rows = api["rankings"]

    # WHEN the ranking page asks for the top 3 at a 2-session horizon
    at = run_page("app_pages/ranking.py", horizon="2", top="3")

    # THEN it shows the API's best and worst three, their forecast returns and intervals
    assert not at.exception and not at.error
    top, bottom = (df.value for df in at.dataframe)
    assert top["symbol"].tolist() == [r["symbol"] for r in rows[:3]]
    assert bottom["symbol"].tolist() == [r["symbol"] for r in reversed(rows[3:])]
    assert top["forecast return"].iloc[0] == f"{rows[0]['expected_return']:.2%}"
    assert top["interval"].iloc[0] == f"{rows[0]['lower']:.2%} .. {rows[0]['upper']:.2%}"
    assert top["score"].iloc[0] == f"{rows[0]['score']:.4f}"
    # AND the bundle's walk-forward rank IC and long-short equity curve
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["mean daily rank IC"] == f"{api['rank_ic']:.3f}"
    assert metrics["its t-statistic"] == f"{api['rank_ic_t']:.2f}"
    charts = figures(at)
    assert charts[0]["data"][0]["y"] == [r["symbol"] for r in rows[:3]]
    assert charts[0]["data"][0]["x"] == pytest.approx([r["expected_return"] for r in rows[:3]])
    equity = traces(charts[2], "equity")["equity"]
    assert equity["x"] == api["long_short"]["dates"]
    assert equity["y"] == pytest.approx(api["long_short"]["equity"])


def test_status_page_shows_version_and_freshness(dashboard_env: str) -> None:
    version = httpx.get(f"{dashboard_env}/version").json()
    symbols = httpx.get(f"{dashboard_env}/symbols", headers=KEY).json()["symbols"]
    at = run_page("app_pages/status.py")
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["API"] == "up" and metrics["Model version"] == version["model_version"]
    table = at.dataframe[0].value
    assert table["symbol"].tolist() == [s["symbol"] for s in symbols]
    assert table["last bar"].tolist() == [s["last_date"] for s in symbols]


@pytest.mark.parametrize(
    "page",
    [
        None,
        "app_pages/comparison.py",
        "app_pages/ranking.py",
        "app_pages/monitoring.py",
        "app_pages/status.py",
    ],
)
def test_every_page_says_when_the_api_is_down(
    monkeypatch: pytest.MonkeyPatch, page: str | None
) -> None:
    # GIVEN nothing listening at the configured URL
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("STOCKML_DASHBOARD__API_URL", url)
    # WHEN a page opens
    at = run_page(page)
    # THEN it shows one clear message naming the URL, and no exception
    assert not at.exception
    assert len(at.error) == 1 and "cannot reach the API" in at.error[0].value
    assert url in at.error[0].value
    assert not at.get("plotly_chart")


def test_a_wrong_key_is_reported_as_such(
    dashboard_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOCKML_API_KEY", "not-the-key")
    at = run_page(symbol="MSFT")
    assert not at.exception
    assert at.error[0].value.startswith("The API did not answer as expected: 401")
    assert "STOCKML_API_KEY" in at.caption[0].value


def test_client_maps_each_failure_to_a_kind(dashboard_env: str) -> None:
    def kind(*args: Any, **kwargs: Any) -> tuple[str, int | None]:
        with pytest.raises(ApiError) as caught:
            request_json(*args, **kwargs)
        return caught.value.kind, caught.value.status

    assert kind(dashboard_env, None, "GET", "/symbols") == ("unauthorized", 401)
    assert kind(dashboard_env, API_KEY, "GET", "/plot/NOPE") == ("not_found", 404)
    assert kind(dashboard_env, API_KEY, "GET", "/plot/MSFT", params={"days": 0}) == ("invalid", 422)
    assert kind(f"http://127.0.0.1:{free_port()}", None, "GET", "/health") == ("unreachable", None)
    # a server that accepts the connection and never answers
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        assert kind(f"http://127.0.0.1:{port}", None, "GET", "/", timeout_s=0.5) == (
            "unreachable",
            None,
        )
    body = request_json(dashboard_env, API_KEY, "POST", "/predict/MSFT", body={"days": 2})
    assert len(body["dates"]) == 2


def test_a_misconfigured_url_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKML_DASHBOARD__API_URL", "api.example.com")  # no scheme
    at = run_page()
    assert not at.exception
    assert len(at.error) == 1 and "misconfigured" in at.error[0].value
