"""Model comparison: out-of-sample metrics beside the baselines, the gate, the backtest."""

from __future__ import annotations

import streamlit as st

from stockml_dashboard import charts, data, ui
from stockml_dashboard.parsing import (
    METRIC_COLUMNS,
    fmt,
    parse_equity,
    parse_gate,
    parse_metrics,
    parse_symbols,
)

cfg = ui.config()
st.title("Model comparison")

statuses = parse_symbols(ui.call(data.symbols, cfg))
if not statuses:
    st.warning("The API serves no symbols yet.")
    st.stop()
symbol = ui.choose([s.symbol for s in statuses], "symbol", "Symbol", help="Type to search.")
payload = ui.call(data.metrics, cfg, symbol)
table = parse_metrics(payload)
if not table.rows:
    st.warning(f"The model bundle holds no evaluation metrics for {symbol}.")
    st.stop()

scope = f"metrics of {symbol}" if table.scope == "symbol" else "pooled over the bundle's symbols"
st.caption(f"Model {table.model_version} · walk-forward, out of sample, horizon 1 · {scope}")
st.dataframe(
    table.display_rows(),
    hide_index=True,
    column_config={
        c.label: st.column_config.TextColumn(c.label, help=c.help) for c in METRIC_COLUMNS
    },
)
if any(table.value(n, "rmse_ratio_vs_naive") is not None for n in table.rows):
    st.plotly_chart(charts.ratio_figure(table), config=charts.PLOTLY_CONFIG, key="ratio_chart")

st.subheader("Promotion gate")
gate = parse_gate(payload)
if gate is None:
    st.info("n/a: this bundle records no gate verdict.")
else:
    if gate.passed is True:
        st.success("Passed: this bundle may serve as the champion.")
    elif gate.passed is False:
        st.warning("Refused: this bundle did not pass the gate.")
    else:
        st.info("The gate's verdict is not recorded.")
    if gate.checks:
        st.dataframe(
            [
                {
                    "check": c.name,
                    "value": fmt(c.value, ".4g"),
                    "threshold": fmt(c.threshold, ".4g"),
                    "result": {True: "pass", False: "FAIL", None: "n/a"}[c.passed],
                }
                for c in gate.checks
            ],
            hide_index=True,
        )
    for reason in gate.reasons:
        st.markdown(f"- {reason}")

st.subheader("Backtest")
curve = parse_equity(payload)
if curve is None:
    st.info("n/a: this bundle carries no backtest equity curve.")
else:
    st.plotly_chart(
        charts.equity_figure(
            curve, f"{curve.model or 'model'}: long/flat vs buy-and-hold (pooled, after costs)"
        ),
        config=charts.PLOTLY_CONFIG,
        key="equity_chart",
    )

st.markdown(
    """
**Reading these numbers.** Every figure is out of sample (walk-forward: each test block is
forecast by models fitted on earlier data only) and sits beside the baselines it must beat:
*naive* (tomorrow's price is today's) and *drift* (the average past move continues).
An RMSE ratio below 1 beats naive; a direction hit rate only means something above the
*always-long* rate of the same days; the DM p-value says whether a difference in error could be
chance (small is good). Daily stock returns are close to unpredictable, so beating naive is
hard, and a model that does not beat it with significance is refused by the gate.
"""
)
