"""stockml dashboard: forecasts, model comparison, the universe ranking, monitoring and the
API's status.

Run: ``stockml dashboard`` (or ``streamlit run dashboard/streamlit_app.py``). It talks to the
prediction API only; ``STOCKML_DASHBOARD__API_URL`` and ``STOCKML_API_KEY`` say where and how.
"""

from __future__ import annotations

import streamlit as st

from stockml_dashboard import ui

st.set_page_config(page_title="stockml", page_icon=":material/show_chart:", layout="wide")

pages = [
    st.Page("app_pages/forecast.py", title="Forecast", icon=":material/show_chart:", default=True),
    st.Page("app_pages/comparison.py", title="Model comparison", icon=":material/leaderboard:"),
    st.Page("app_pages/ranking.py", title="Ranking", icon=":material/format_list_numbered:"),
    st.Page("app_pages/monitoring.py", title="Monitoring", icon=":material/query_stats:"),
    st.Page("app_pages/status.py", title="Status", icon=":material/monitor_heart:"),
]
page = st.navigation(pages)
cfg = ui.config()
st.sidebar.caption(f"API: {cfg.api_url}")
page.run()
