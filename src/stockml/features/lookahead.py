"""A reusable look-ahead check: features at ``t`` must not change when data after ``t`` is removed.

``lookahead_violations`` compares, for each cut date ``t``, the rows dated ``t`` of the features
computed on data truncated at ``t`` with the same rows of the features computed on the full
history. Any difference means some feature at ``t`` read data dated after ``t`` (a centered
window, a backward fill, a join that takes a later value, a post-close headline counted on ``t``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from stockml.calendar import session_closes


def truncate_inputs(
    bars: pd.DataFrame,
    market: pd.DataFrame | None,
    news: pd.DataFrame | None,
    cut: pd.Timestamp,
) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    """What was known at the close of session ``cut``: bars dated <= cut, news published before its close."""
    cut = pd.Timestamp(cut).normalize()
    bars_t = bars[pd.to_datetime(bars["date"]) <= cut]
    market_t = None if market is None else market[pd.to_datetime(market["date"]) <= cut]
    news_t = None
    if news is not None:
        closes = session_closes(cut, cut)
        close = closes.iloc[0] if len(closes) else (cut + pd.Timedelta(days=1)).tz_localize("UTC")
        news_t = news[pd.to_datetime(news["published_at"], utc=True) < close]
    return bars_t, market_t, news_t


def lookahead_violations(
    compute: Callable[[pd.Timestamp | None], pd.DataFrame],
    cuts: Sequence[pd.Timestamp],
    columns: Sequence[str],
    rtol: float = 1e-9,
    atol: float = 1e-12,
) -> list[str]:
    """Columns and cut dates where truncating the data at ``t`` changes the features at ``t``.

    Args:
        compute: ``compute(None)`` gives features on the full history, ``compute(t)`` on the
            data known at ``t`` (e.g. via ``truncate_inputs``); both with ``symbol, date``.
        cuts: the dates ``t`` to check.
        columns: the feature columns to compare.
        rtol: relative tolerance; atol: absolute tolerance (values near 0).

    Returns:
        One message per (cut, column) that differs or is missing; empty when there is no leak.
    """
    full = compute(None).set_index(["symbol", "date"]).sort_index()
    problems: list[str] = []
    for cut in cuts:
        cut = pd.Timestamp(cut).normalize()
        part = compute(cut)
        at_cut = (
            part[pd.to_datetime(part["date"]) == cut].set_index(["symbol", "date"]).sort_index()
        )
        expected = full[full.index.get_level_values("date") == cut]
        if not expected.index.equals(at_cut.index):
            problems.append(
                f"{cut.date()}: rows differ ({len(at_cut)} truncated vs {len(expected)} full)"
            )
            continue
        for col in columns:
            a = at_cut[col].to_numpy(dtype="float64")
            b = expected[col].to_numpy(dtype="float64")
            if not np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True):
                problems.append(f"{cut.date()}: {col} truncated={a.tolist()} full={b.tolist()}")
    return problems
