"""Status: is the API up, which model does it serve, and how fresh is its data."""

from __future__ import annotations

import streamlit as st

from stockml_dashboard import data, ui
from stockml_dashboard.client import ApiError
from stockml_dashboard.parsing import parse_gate, parse_health, parse_symbols

cfg = ui.config()
st.title("Status")

health = parse_health(ui.call(data.health, cfg))
version = ui.call(data.version, cfg)
version = version if isinstance(version, dict) else {}

cols = st.columns(3)
cols[0].metric("API", "up" if health.ok else "unavailable")
cols[1].metric("Model version", str(version.get("model_version") or health.model_version or "n/a"))
cols[2].metric("Package", str(version.get("package") or "n/a"))
for problem in health.problems:
    st.error(problem)
if not health.ok:
    st.stop()

try:
    statuses = parse_symbols(data.symbols(cfg))
except ApiError as error:
    ui.show_api_error(error, cfg)
    st.stop()

gate = None
if statuses:
    try:
        gate = parse_gate(data.metrics(cfg, statuses[0].symbol))
    except ApiError:
        gate = None  # the verdict is extra; the rest of the page stands without it
if gate is None or gate.passed is None:
    st.info("Promotion: n/a (the bundle records no gate verdict).")
elif gate.passed:
    st.success("Promotion: the served bundle passed the gate.")
else:
    st.warning("Promotion: the served bundle did NOT pass the promotion gate.")

st.subheader("Data freshness")
st.caption("Sessions old: exchange sessions between the last bar and the last completed one.")
if not statuses:
    st.warning("No symbol has stored features for this bundle.")
    st.stop()
stale = [s.symbol for s in statuses if s.fresh is False]
if stale:
    st.warning(f"Stale data: {', '.join(stale)}.")
st.dataframe(
    [
        {
            "symbol": s.symbol,
            "last bar": s.last_date.isoformat() if s.last_date else "n/a",
            "sessions old": ("n/a" if s.age_sessions is None else str(s.age_sessions)),
            "fresh": {True: "yes", False: "no", None: "n/a"}[s.fresh],
        }
        for s in statuses
    ],
    hide_index=True,
)
st.caption(
    f"Commit served: {version.get('git_commit') or 'n/a'} · "
    f"model trained from: {version.get('model_git_commit') or 'n/a'}"
)
