"""Forecast: price history, each model's forecast path, the ensemble's band and the baselines."""

from __future__ import annotations

import streamlit as st

from stockml_dashboard import charts, data, ui
from stockml_dashboard.parsing import fmt, parse_plot, parse_symbols

# sessions of price history asked from the API (the chart opens on the last 60)
HISTORY = 250

cfg = ui.config()
st.title("Forecast")

statuses = parse_symbols(ui.call(data.symbols, cfg))
if not statuses:
    st.warning(
        "The API serves no symbols yet: its model bundle has no symbol with stored features."
    )
    st.stop()
by_name = {s.symbol: s for s in statuses}
symbol = ui.choose(list(by_name), "symbol", "Symbol", help="Type to search.")
plot = parse_plot(ui.call(data.plot, cfg, symbol, HISTORY))
if not plot.dates or not plot.predictions or not plot.history:
    st.warning(f"The API returned no forecast for {symbol}.")
    st.stop()

names = list(plot.predictions)
left, right = st.columns([1, 2])
with left:
    if plot.horizon > 1:
        days = st.slider(
            "Horizon (sessions)",
            1,
            plot.horizon,
            value=ui.int_param("days", plot.horizon, 1, plot.horizon),
        )
    else:
        days = 1
    show_baselines = st.toggle("Naive and drift baselines", value=True)
with right:
    default = ["ensemble"] if "ensemble" in names else names[:1]
    models = st.multiselect("Models", names, default=ui.list_param("models", names, names))
st.query_params["days"] = str(days)
st.query_params["models"] = ",".join(models)
if not models:
    st.info("Pick at least one model to draw its forecast.")
    models = default

status = by_name[symbol]
last = plot.history[-1]
st.caption(
    f"Model {plot.model_version} · last close {last.close:,.2f} on {last.date:%Y-%m-%d}"
    + (f" · data {status.age_sessions} session(s) old" if status.age_sessions is not None else "")
    + ("" if status.fresh is not False else " · **stale**")
)
st.plotly_chart(
    charts.forecast_figure(plot, models, days, show_baselines),
    config=charts.PLOTLY_CONFIG,
    key="forecast_chart",
)
if not plot.has_ohlc:
    st.caption("Closes only: the API sent no open/high/low for this history.")

rows = []
for i, when in enumerate(plot.dates[:days]):
    row = {"date": when.isoformat()}
    for name in models:
        values = plot.predictions.get(name, [])
        row[name] = fmt(values[i] if i < len(values) else None, ",.2f")
    band = plot.intervals.get("ensemble")
    if band and i < len(band.lower) and i < len(band.upper):
        row["ensemble band"] = f"{fmt(band.lower[i], ',.2f')} - {fmt(band.upper[i], ',.2f')}"
    rows.append(row)
st.dataframe(rows, hide_index=True)
st.caption(
    "Dates are exchange sessions. naive: the last close, unchanged; drift: the last close "
    f"grown at the mean daily log return of the {len(plot.history)} sessions shown. "
    "See Model comparison for how each model did against them out of sample."
)
