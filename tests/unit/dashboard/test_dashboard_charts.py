"""The dashboard's figures: session x-axis, forecast traces, band and baselines."""

from __future__ import annotations

import json
import math
from datetime import date

import numpy as np
import pandas as pd

from stockml import calendar
from stockml_dashboard.charts import (
    baseline_paths,
    forecast_figure,
    missing_sessions,
    ranking_figure,
)
from stockml_dashboard.parsing import parse_plot, parse_rankings


def sessions(start: str, end: str) -> list[date]:
    """NYSE sessions (exchange_calendars, through the ingestion's calendar): the oracle."""
    return [d.date() for d in calendar.sessions(pd.Timestamp(start), pd.Timestamp(end))]


def plot_body(ohlc: bool = True) -> dict:  # type: ignore[type-arg]
    history = sessions("2017-06-01", "2017-11-10")
    future = sessions("2017-11-13", "2017-11-30")[:5]
    closes = np.linspace(70.0, 84.0, len(history))
    points = []
    for d, c in zip(history, closes, strict=True):
        point = {"date": d.isoformat(), "close": float(c)}
        if ohlc:
            point |= {"open": c - 0.5, "high": c + 1, "low": c - 1, "volume": 1e6}
        points.append(point)
    return {
        "symbol": "MSFT",
        "model_version": "v1",
        "history": points,
        "dates": [d.isoformat() for d in future],
        "predictions": {"ridge": [84.1, 84.2, 84.3, 84.4, 84.5], "ensemble": [85, 86, 87, 88, 89]},
        "intervals": {"ensemble": {"level": 0.9, "lower": [80, 80, 80, 80, 80], "upper": [90] * 5}},
    }


def by_role(fig) -> dict[str, list[dict]]:  # type: ignore[no-untyped-def, type-arg]
    out: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for trace in json.loads(fig.to_json())["data"]:
        out.setdefault(trace["meta"]["role"], []).append(trace)
    return out


def test_missing_sessions_are_the_exchange_holidays() -> None:
    # GIVEN every NYSE session of 2017
    days = sessions("2017-01-03", "2017-12-29")
    # WHEN the weekdays missing between them are listed
    missing = missing_sessions(days)
    # THEN they are exactly the weekday holidays of 2017
    weekdays = pd.bdate_range("2017-01-03", "2017-12-29").date
    assert missing == [d.isoformat() for d in weekdays if d not in set(days)]
    assert "2017-07-04" in missing and "2017-11-23" in missing and len(missing) == 8


def test_baselines_naive_and_drift() -> None:
    closes = [100.0, 101.0, 99.0, 104.0]
    paths = baseline_paths(closes, 3)
    assert paths["naive"] == [104.0] * 3
    mu = np.mean(np.diff(np.log(closes)))
    assert np.allclose(paths["drift"], [104.0 * math.exp(mu * h) for h in (1, 2, 3)], rtol=1e-12)
    assert baseline_paths([5.0], 2) == {"naive": [5.0, 5.0]} and baseline_paths([], 2) == {}


def test_forecast_figure_draws_the_api_values_on_sessions() -> None:
    # GIVEN a /plot body with bars and the ensemble's band
    body = plot_body()
    plot = parse_plot(body)
    # WHEN drawn for 3 sessions, ridge and the ensemble
    fig = forecast_figure(plot, ["ridge", "ensemble"], 3)
    roles = by_role(fig)
    # THEN history is candlesticks with the sent bars, plus volume
    (history,) = roles["history"]
    assert history["type"] == "candlestick"
    assert history["open"] == [p["open"] for p in body["history"]]
    assert roles["volume"][0]["y"] == [1e6] * len(body["history"])
    # AND each forecast trace holds the API's first 3 dates and closes
    forecasts = {t["meta"]["model"]: t for t in roles["forecast"]}
    assert set(forecasts) == {"ridge", "ensemble"}
    for name, trace in forecasts.items():
        assert trace["x"] == body["dates"][:3]
        assert trace["y"] == body["predictions"][name][:3]
        assert all(date.fromisoformat(x).weekday() < 5 for x in trace["x"])
    # AND the band is the ensemble's, the baselines sit on the same dates
    sides = {t["meta"]["side"]: t["y"] for t in roles["band"]}
    assert sides == {"lower": [80, 80, 80], "upper": [90, 90, 90]}
    assert {t["meta"]["model"] for t in roles["baseline"]} == {"naive", "drift"}
    assert all(t["x"] == body["dates"][:3] for t in roles["baseline"])
    # AND the x-axis skips weekends and the holidays in range (Independence Day, Labor Day)
    breaks = fig.layout.xaxis.rangebreaks
    assert breaks[0].bounds == ("sat", "mon")
    assert set(breaks[1].values) == {"2017-07-04", "2017-09-04"}


def test_forecast_figure_without_bars_band_or_baselines() -> None:
    plot = parse_plot(plot_body(ohlc=False))
    roles = by_role(forecast_figure(plot, ["ridge"], 5, baselines=False))
    assert roles["history"][0]["type"] == "scatter"
    assert "volume" not in roles and "band" not in roles and "baseline" not in roles
    assert [t["meta"]["model"] for t in roles["forecast"]] == ["ridge"]


def test_ranking_figure_error_bars_span_the_interval() -> None:
    ranking = parse_rankings(
        {"rankings": [{"symbol": "A", "rank": 1, "score": 0.02, "lower": 0.0, "upper": 0.05}]}
    )
    (bar,) = json.loads(ranking_figure(ranking.rows, "t").to_json())["data"]
    assert bar["y"] == ["A"] and bar["x"] == [0.02]
    assert np.allclose(bar["error_x"]["array"], [0.03])
    assert np.allclose(bar["error_x"]["arrayminus"], [0.02])
