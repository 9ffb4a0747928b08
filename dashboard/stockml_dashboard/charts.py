"""Plotly figures of the dashboard, built from parsed API answers (no Streamlit here).

Each trace carries ``meta={"role": ..., "model": ...}`` so tests (and readers of the
figure's JSON) can find the history, forecast, band and baseline traces without relying on
colours or order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, timedelta

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from stockml_dashboard.parsing import (
    Curve,
    DriftRow,
    MetricsTable,
    PlotData,
    RankedSymbol,
    Series,
)

ENSEMBLE = "ensemble"
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2")
ENSEMBLE_COLOUR = "#111111"
BASELINE_COLOUR = "#7f7f7f"
# sessions shown when the chart opens (the range buttons show more)
INITIAL_SESSIONS = 60
# Plotly's tool bar, cut to what fits beside the range buttons on a phone (pinch and drag zoom,
# double-tap resets)
PLOTLY_CONFIG = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["zoomIn2d", "zoomOut2d", "autoScale2d", "lasso2d", "select2d"],
}


def colour(name: str, names: Sequence[str]) -> str:
    if name == ENSEMBLE:
        return ENSEMBLE_COLOUR
    others = [n for n in names if n != ENSEMBLE]
    return PALETTE[others.index(name) % len(PALETTE)] if name in others else PALETTE[0]


def baseline_paths(closes: Sequence[float], days: int) -> dict[str, list[float]]:
    """The naive and drift forecasts of the next ``days`` sessions from a price history.

    naive: the last close, unchanged (the model to beat). drift: the last close grown by the
    mean daily log return of ``closes`` (the history on the chart), ``h`` sessions ahead.
    """
    if not closes:
        return {}
    last = float(closes[-1])
    naive = [last] * days
    if len(closes) < 2:
        return {"naive": naive}
    mu = (math.log(closes[-1]) - math.log(closes[0])) / (len(closes) - 1)
    return {"naive": naive, "drift": [last * math.exp(mu * h) for h in range(1, days + 1)]}


def missing_sessions(dates: Sequence[date]) -> list[str]:
    """Weekdays between the first and last of ``dates`` that are not among them (holidays).

    With a Saturday-to-Monday break they make the x-axis run on exchange sessions only.
    """
    if not dates:
        return []
    have = set(dates)
    out, day = [], min(dates)
    while day < max(dates):
        if day.weekday() < 5 and day not in have:
            out.append(day.isoformat())
        day += timedelta(days=1)
    return out


def forecast_figure(
    plot: PlotData, models: Sequence[str], days: int, baselines: bool = True
) -> go.Figure:
    """Price history (candlesticks + volume when the API sends bars), forecasts, band, baselines.

    Args:
        plot: the parsed ``/plot`` answer (the bundle's whole horizon).
        models: the models to draw, in order.
        days: sessions ahead to draw (1..horizon).
        baselines: also draw the naive and drift paths.
    """
    days = max(1, min(days, plot.horizon))
    dates = plot.dates[:days]
    with_volume = plot.has_volume
    fig = make_subplots(
        rows=2 if with_volume else 1,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.03,
        row_heights=[0.78, 0.22] if with_volume else [1.0],
    )
    history_x = [b.date for b in plot.history]
    if plot.has_ohlc:
        fig.add_trace(
            go.Candlestick(
                x=history_x,
                open=[b.open for b in plot.history],
                high=[b.high for b in plot.history],
                low=[b.low for b in plot.history],
                close=[b.close for b in plot.history],
                name=plot.symbol or "price",
                meta={"role": "history"},
            ),
            row=1,
            col=1,
        )
    else:
        fig.add_trace(
            go.Scatter(
                x=history_x,
                y=[b.close for b in plot.history],
                name=f"{plot.symbol} close",
                mode="lines",
                line={"color": "#444444", "width": 1.5},
                meta={"role": "history"},
            ),
            row=1,
            col=1,
        )
    if with_volume:
        fig.add_trace(
            go.Bar(
                x=history_x,
                y=[b.volume for b in plot.history],
                name="volume",
                marker_color="rgba(120,120,120,0.45)",
                showlegend=False,
                meta={"role": "volume"},
            ),
            row=2,
            col=1,
        )
    band = plot.intervals.get(ENSEMBLE)
    if band and ENSEMBLE in models and band.lower and band.upper:
        level = f"{band.level:.0%} " if band.level else ""
        fig.add_trace(
            go.Scatter(
                x=dates,
                y=band.upper[:days],
                mode="lines",
                line={"width": 0},
                showlegend=False,
                hoverinfo="skip",
                meta={"role": "band", "model": ENSEMBLE, "side": "upper"},
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=dates,
                y=band.lower[:days],
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor="rgba(17,17,17,0.15)",
                name=f"ensemble {level}band",
                meta={"role": "band", "model": ENSEMBLE, "side": "lower"},
            ),
            row=1,
            col=1,
        )
    if baselines:
        closes = [b.close for b in plot.history]
        for name, path in baseline_paths(closes, days).items():
            fig.add_trace(
                go.Scatter(
                    x=dates,
                    y=path,
                    name=name,
                    mode="lines",
                    line={"color": BASELINE_COLOUR, "dash": "dot" if name == "naive" else "dash"},
                    meta={"role": "baseline", "model": name},
                ),
                row=1,
                col=1,
            )
    names = list(plot.predictions)
    for name in models:
        values = plot.predictions.get(name)
        if values is None:
            continue
        fig.add_trace(
            go.Scatter(
                x=dates,
                y=values[:days],
                name=name,
                mode="lines+markers",
                line={"color": colour(name, names), "width": 3 if name == ENSEMBLE else 2},
                marker={"size": 6},
                meta={"role": "forecast", "model": name},
            ),
            row=1,
            col=1,
        )
    _price_layout(fig, plot, dates, models, with_volume)
    return fig


def _price_layout(
    fig: go.Figure,
    plot: PlotData,
    dates: Sequence[date],
    models: Sequence[str],
    with_volume: bool,
) -> None:
    every = [b.date for b in plot.history] + list(dates)
    fig.update_xaxes(
        rangebreaks=[{"bounds": ["sat", "mon"]}, {"values": missing_sessions(every)}],
        rangeslider_visible=False,
    )
    fig.update_layout(
        height=560 if with_volume else 460,
        margin={"l": 8, "r": 8, "t": 36, "b": 8},
        hovermode="x unified",
        legend={"orientation": "h", "yanchor": "top", "y": -0.08, "x": 0},
        xaxis={
            "rangeselector": {
                "buttons": [
                    {"count": 1, "label": "1m", "step": "month", "stepmode": "backward"},
                    {"count": 3, "label": "3m", "step": "month", "stepmode": "backward"},
                    {"count": 6, "label": "6m", "step": "month", "stepmode": "backward"},
                    {"step": "all", "label": "all"},
                ]
            }
        },
        yaxis_title="price",
        uirevision=plot.symbol,
    )
    # open on the last sessions and the forecast, with the price axis fitted to them
    shown = plot.history[-INITIAL_SESSIONS:]
    if shown and dates:
        lows = [b.low if b.low is not None else b.close for b in shown]
        highs = [b.high if b.high is not None else b.close for b in shown]
        for name in models:
            lows += [v for v in plot.predictions.get(name, [])[: len(dates)] if v is not None]
            highs += [v for v in plot.predictions.get(name, [])[: len(dates)] if v is not None]
        band = plot.intervals.get(ENSEMBLE)
        if band and ENSEMBLE in models:
            lows += [v for v in band.lower[: len(dates)] if v is not None]
            highs += [v for v in band.upper[: len(dates)] if v is not None]
        pad = 0.04 * (max(highs) - min(lows) or max(highs) or 1.0)
        fig.update_xaxes(range=[shown[0].date, dates[-1] + timedelta(days=1)])
        fig.update_yaxes(range=[min(lows) - pad, max(highs) + pad], row=1, col=1)


def equity_figure(curve: Curve, title: str) -> go.Figure:
    """Growth of 1 for each series of ``curve`` (strategy vs buy-and-hold, or long-short)."""
    fig = go.Figure()
    labels = {"strategy": "long/flat strategy", "buy_and_hold": "buy-and-hold"}
    for name, values in curve.series.items():
        fig.add_trace(
            go.Scatter(
                x=curve.dates,
                y=values,
                name=labels.get(name, name),
                mode="lines",
                line={"color": BASELINE_COLOUR if name == "buy_and_hold" else PALETTE[0]},
                meta={"role": "equity", "series": name},
            )
        )
    fig.update_layout(
        title=title,
        height=360,
        margin={"l": 8, "r": 8, "t": 40, "b": 8},
        yaxis_title="growth of 1",
        legend={"orientation": "h", "y": -0.15},
        hovermode="x unified",
    )
    return fig


def ratio_figure(table: MetricsTable) -> go.Figure:
    """RMSE over naive RMSE per model and baseline, with the line to beat at 1."""
    names = [n for n in table.rows if table.value(n, "rmse_ratio_vs_naive") is not None]
    values = [table.value(n, "rmse_ratio_vs_naive") for n in names]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=names,
            orientation="h",
            marker_color=[
                BASELINE_COLOUR if table.roles[n] == "baseline" else PALETTE[0] for n in names
            ],
            text=[f"{v:.3f}" for v in values if v is not None],
            textposition="auto",
            meta={"role": "rmse_ratio"},
        )
    )
    fig.add_vline(x=1.0, line_dash="dash", line_color="#d62728")
    lo = min([*values, 1.0]) if values else 0.9  # type: ignore[type-var]
    hi = max([*values, 1.0]) if values else 1.1  # type: ignore[type-var]
    pad = max(0.01, (hi - lo) * 0.3)  # type: ignore[operator]
    fig.update_layout(
        title="RMSE / naive RMSE (below 1 beats naive)",
        height=120 + 36 * len(names),
        margin={"l": 8, "r": 8, "t": 40, "b": 8},
        xaxis={"range": [lo - pad, hi + pad]},  # type: ignore[operator]
        yaxis={"autorange": "reversed"},
    )
    return fig


def ranking_figure(rows: Sequence[RankedSymbol], title: str) -> go.Figure:
    """Each symbol's forecast return with its interval, best at the top."""
    shown = [r for r in rows if r.expected_return is not None]
    values = [r.expected_return for r in shown]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=[r.symbol for r in shown],
            orientation="h",
            marker_color=[PALETTE[2] if (v or 0) >= 0 else PALETTE[1] for v in values],
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [
                    (r.upper - r.expected_return) if r.upper is not None else 0 for r in shown
                ],  # type: ignore[operator]
                "arrayminus": [
                    (r.expected_return - r.lower) if r.lower is not None else 0 for r in shown
                ],  # type: ignore[operator]
            },
            meta={"role": "ranking"},
        )
    )
    fig.update_layout(
        title=title,
        height=120 + 28 * len(shown),
        margin={"l": 8, "r": 8, "t": 40, "b": 8},
        xaxis={"tickformat": ".1%", "title": "forecast return"},
        yaxis={"autorange": "reversed"},
    )
    return fig


def live_figure(series: dict[str, Series], level: float = 0.9) -> go.Figure:
    """Each model's live figures over time: error ratios (the line to beat at 1), direction
    hit rate beside always-long's, and the band's coverage beside its level."""
    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        subplot_titles=(
            "RMSE / naive (solid) and / drift (dotted): below 1 beats it",
            "direction hit rate (solid) vs always-long (dotted)",
            "interval coverage",
        ),
    )
    names = list(series)
    for name, s in series.items():
        line_colour = colour(name, names)
        panels = (
            (1, "rmse_ratio_vs_naive", "solid"),
            (1, "rmse_ratio_vs_drift", "dot"),
            (2, "directional_accuracy", "solid"),
            (2, "directional_accuracy_always_long", "dot"),
            (3, "interval_coverage", "solid"),
        )
        for row, key, dash in panels:
            fig.add_trace(
                go.Scatter(
                    x=s.dates,
                    y=s.values[key],
                    name=f"{name} {key.replace('_', ' ')}",
                    mode="lines",
                    line={"color": line_colour, "dash": dash},
                    legendgroup=name,
                    showlegend=key == "rmse_ratio_vs_naive",
                    meta={"role": "live", "model": name, "series": key},
                ),
                row=row,
                col=1,
            )
    fig.add_hline(y=1.0, line_dash="dash", line_color="#d62728", row=1, col=1)
    fig.add_hline(y=level, line_dash="dash", line_color="#d62728", row=3, col=1)
    fig.update_layout(
        height=620,
        margin={"l": 8, "r": 8, "t": 40, "b": 8},
        legend={"orientation": "h", "y": -0.08},
        hovermode="x unified",
    )
    fig.update_yaxes(tickformat=".0%", row=2, col=1)
    fig.update_yaxes(tickformat=".0%", row=3, col=1)
    return fig


def psi_figure(rows: Sequence[DriftRow], top: int = 20) -> go.Figure:
    """The highest PSIs, each beside its threshold (what the training history's own windows
    reached, at least the configured floor)."""
    shown = [r for r in rows if r.psi is not None][:top]
    fig = go.Figure(
        go.Bar(
            x=[r.psi for r in shown],
            y=[r.feature for r in shown],
            orientation="h",
            marker_color=[PALETTE[1] if r.drifted else BASELINE_COLOUR for r in shown],
            meta={"role": "psi"},
            name="PSI",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[r.threshold for r in shown],
            y=[r.feature for r in shown],
            mode="markers",
            marker={"symbol": "line-ns-open", "size": 14, "color": "#111111"},
            meta={"role": "psi_threshold"},
            name="threshold",
        )
    )
    fig.update_layout(
        title="Feature drift: PSI of the recent window vs training (red: drifted)",
        height=120 + 24 * len(shown),
        margin={"l": 8, "r": 8, "t": 40, "b": 8},
        yaxis={"autorange": "reversed"},
        legend={"orientation": "h", "y": -0.1},
    )
    return fig
