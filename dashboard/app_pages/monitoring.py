"""Monitoring: the served forecasts' live accuracy over time, feature drift, data freshness,
quarantine and the retraining decision (the monitor's last run, through the API)."""

from __future__ import annotations

import streamlit as st

from stockml_dashboard import charts, data, ui
from stockml_dashboard.parsing import (
    LIVE_COLUMNS,
    fmt,
    parse_live,
    parse_monitoring,
    parse_symbols,
)

cfg = ui.config()
st.title("Monitoring")

payload = ui.call(data.monitoring, cfg)
if isinstance(payload, dict) and "error" in payload:
    st.info(
        "No monitoring yet: the monitor has not run (`stockml monitor`, or the scheduled "
        f"monitor function). The API says: {payload['error'].get('message', 'n/a')}"
    )
    st.stop()
status = parse_monitoring(payload)

cols = st.columns(4)
cols[0].metric("Last run", status.run_date.isoformat() if status.run_date else "n/a")
cols[1].metric("Model", str(status.model_version or "n/a"))
cols[2].metric(
    "Drift",
    "n/a" if status.drift is None else ("DRIFT" if status.drift else "none"),
    help="Share of features whose PSI passes its threshold: "
    f"{fmt(status.drifted_share, '.0%')} (drift from {fmt(status.max_drifted_share, '.0%')}).",
)
cols[3].metric("Stale symbols", str(len(status.stale)))
if status.retrain:
    trigger = status.trigger or {}
    state = trigger.get("state") or "not triggered by this run"
    st.warning(f"Retraining ({state}); the promotion gate decides whether it replaces the model:")
    for reason in status.reasons:
        st.markdown(f"- {reason}")
else:
    st.success("No retraining needed: live error, coverage and drift are within their thresholds.")

st.subheader("Live accuracy")
statuses = parse_symbols(ui.call(data.symbols, cfg))
if not statuses:
    st.warning("The API serves no symbols yet.")
    st.stop()
symbol = ui.choose([s.symbol for s in statuses], "symbol", "Symbol", help="Type to search.")
live = parse_live(ui.call(data.metrics, cfg, symbol))
if live is None or not live.figures:
    st.info(f"No served forecast of {symbol} has been scored yet.")
else:
    horizon = st.select_slider("Horizon (sessions)", options=live.horizons, value=live.horizons[0])
    st.caption(
        f"The API's forecasts of {symbol} for the {live.sessions} sessions "
        f"{live.start}..{live.end}, scored against the prices realised after them "
        f"(monitor run {live.run_date}), beside the baselines on the same sessions."
    )
    st.dataframe(
        live.display_rows(horizon),
        hide_index=True,
        column_config={
            c.label: st.column_config.TextColumn(c.label, help=c.help) for c in LIVE_COLUMNS
        },
    )
    over_time = {m: by_h[horizon] for m, by_h in live.series.items() if horizon in by_h}
    if over_time:
        st.plotly_chart(
            charts.live_figure(over_time), config=charts.PLOTLY_CONFIG, key="live_chart"
        )
    else:
        st.info("Too few scored sessions for the accuracy-over-time chart yet.")

st.subheader("Feature drift")
if status.drift is None:
    st.info(status.drift_reason or "No drift check: the bundle records no feature distribution.")
if status.drift_rows:
    st.plotly_chart(charts.psi_figure(status.drift_rows), config=charts.PLOTLY_CONFIG, key="psi")

st.subheader("Data freshness and quarantine")
if status.stale:
    st.warning(f"Stale data: {', '.join(status.stale)} (expected {status.expected_session}).")
st.dataframe(
    [
        {
            "symbol": f.symbol,
            "last bar": f.last_date.isoformat() if f.last_date else "n/a",
            "sessions old": "n/a" if f.age_sessions is None else str(f.age_sessions),
            "stale": {True: "yes", False: "no", None: "n/a"}[f.stale],
        }
        for f in status.freshness
    ],
    hide_index=True,
)
quarantined = (
    f"{fmt(status.quarantine_share, '.2%')} of the recent rows quarantined "
    f"(alarm above {fmt(status.quarantine_max, '.2%')})"
)
(st.warning if status.quarantine_alarm else st.caption)(quarantined)
