"""Ranking: today's top and bottom of the universe by forecast return, with intervals."""

from __future__ import annotations

import streamlit as st

from stockml_dashboard import charts, data, ui
from stockml_dashboard.client import ApiError
from stockml_dashboard.parsing import RankedSymbol, fmt, parse_rankings

cfg = ui.config()
st.title("Ranking")

left, right = st.columns(2)
with left:
    horizon = st.number_input(
        "Horizon (sessions)", 1, 30, value=ui.int_param("horizon", 1, 1, 30), step=1
    )
with right:
    top = st.slider("Top and bottom", 3, 50, value=ui.int_param("top", 10, 3, 50))
st.query_params["horizon"] = str(horizon)
st.query_params["top"] = str(top)

try:
    with st.spinner("Asking the API for its ranking..."):
        payload = data.rankings(cfg, int(horizon), int(top))
except ApiError as error:
    if error.kind == "not_found":
        st.info(
            "This bundle has no ranking: the API answered 404 to `GET /rankings`. "
            "A universe bundle (one global model over many symbols) serves one."
        )
    else:
        ui.show_api_error(error, cfg)
    st.stop()

ranking = parse_rankings(payload)
if not ranking.rows:
    st.warning("The API's ranking is empty.")
    st.stop()
st.caption(
    f"Model {ranking.model_version or 'n/a'} · as of "
    f"{ranking.as_of.isoformat() if ranking.as_of else 'n/a'} · horizon "
    f"{ranking.horizon or int(horizon)} session(s) · score: forecast return"
)
best, worst = ranking.ends(int(top))


def rows(items: list[RankedSymbol]) -> list[dict[str, str]]:
    return [
        {
            "rank": fmt(r.rank, "d") if r.rank is not None else "n/a",
            "symbol": r.symbol,
            "score": fmt(r.score, ".2%"),
            "interval": f"{fmt(r.lower, '.2%')} .. {fmt(r.upper, '.2%')}",
        }
        for r in items
    ]


left, right = st.columns(2)
with left:
    st.subheader("Top")
    st.dataframe(rows(best), hide_index=True)
    st.plotly_chart(
        charts.ranking_figure(best, "Top: forecast return and interval"),
        config=charts.PLOTLY_CONFIG,
        key="ranking_top",
    )
with right:
    if worst:
        st.subheader("Bottom")
        st.dataframe(rows(worst), hide_index=True)
        st.plotly_chart(
            charts.ranking_figure(worst, "Bottom: forecast return and interval"),
            config=charts.PLOTLY_CONFIG,
            key="ranking_bottom",
        )

st.subheader("How the ranking did (walk-forward)")
st.metric("mean daily rank IC", fmt(ranking.rank_ic, ".3f"))
if ranking.long_short is None:
    st.info("n/a: the API sent no long-short equity curve.")
else:
    st.plotly_chart(
        charts.equity_figure(ranking.long_short, "Long top / short bottom, growth of 1"),
        config=charts.PLOTLY_CONFIG,
        key="ranking_equity",
    )
