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
    f"{ranking.horizon or int(horizon)} session(s) · ordered by the model's score; forecast "
    "return and its interval over the horizon"
)
best, worst = ranking.ends(int(top))


def rows(items: list[RankedSymbol]) -> list[dict[str, str]]:
    return [
        {
            "rank": fmt(r.rank, "d") if r.rank is not None else "n/a",
            "symbol": r.symbol,
            "forecast return": fmt(r.expected_return, ".2%"),
            "interval": f"{fmt(r.lower, '.2%')} .. {fmt(r.upper, '.2%')}",
            "score": fmt(r.score, ".4f"),
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
ic, t, factor, sharpe = st.columns(4)
ic.metric("mean daily rank IC", fmt(ranking.rank_ic, ".3f"))
t.metric("its t-statistic", fmt(ranking.rank_ic_t, ".2f"))
factor.metric(
    f"best single factor ({ranking.best_factor or 'n/a'})",
    fmt(ranking.best_factor_rank_ic, ".3f"),
)
sharpe.metric("long-short Sharpe, net", fmt(ranking.long_short_sharpe_net, ".2f"))
st.caption(
    "Rank IC: per session, the rank correlation of the scores with the next session's "
    "returns, averaged over the walk-forward test sessions (t: Newey-West). The best single "
    "factor is the classic one-line signal (short-term reversal, momentum, low volatility) "
    "that did best on the same rows: a model should beat it."
)
if ranking.long_short is None:
    st.info("n/a: the API sent no long-short equity curve.")
else:
    st.plotly_chart(
        charts.equity_figure(ranking.long_short, "Long top / short bottom, growth of 1"),
        config=charts.PLOTLY_CONFIG,
        key="ranking_equity",
    )
