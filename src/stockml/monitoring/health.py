"""The data's health: feature drift, data freshness and the share of quarantined rows.

**Drift** compares the recent window (the last ``window`` sessions of the monitored bundle's
symbols, from the ``features/`` table, up to the run date) with the bundle's training
distribution (:class:`~stockml.bundle.FeatureDistribution`): the population stability index
(PSI) of each feature over the bundle's quantile bins. A feature **drifts** when its PSI
passes both ``psi_threshold`` and the ``null_quantile`` of what the training history's own
windows of the same length reached (daily features are autocorrelated: a fixed rule of thumb
alone would flag most features of any few weeks); the data **drift** when at least
``max_drifted_share`` of the checked features do.

**Freshness**: each symbol's last stored bar against the last NYSE session completed at the
run (``stockml.calendar``); stale beyond ``max_age_sessions`` sessions.

**Quarantine**: the rows ingestion quarantined during the last ``window_sessions`` sessions,
as a share of those rows and the bars stored for the same sessions.
"""

from __future__ import annotations

import io
import re
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from stockml import calendar
from stockml.bundle import FeatureDistribution


def drift_report(
    distribution: FeatureDistribution,
    features: pd.DataFrame,
    run_date: date,
    psi_threshold: float,
    null_quantile: float,
    max_drifted_share: float,
) -> dict[str, Any]:
    """PSI per feature of the last ``distribution.window`` sessions up to ``run_date``.

    Args:
        distribution: the monitored bundle's training distribution.
        features: feature rows (``date`` + the feature columns) of the bundle's symbols.
        run_date: the last session considered.
        psi_threshold, null_quantile, max_drifted_share: see the module docstring.

    Returns:
        ``{"window": {...}, "features": {name: {"psi", "threshold", "drifted"}},
        "checked", "drifted": [names], "drifted_share", "drift": bool, "max_psi"}``;
        ``drift`` is None (and ``reason`` says why) when the window holds too few sessions.
    """
    rows = features[pd.to_datetime(features["date"]) <= pd.Timestamp(run_date)]
    days = np.sort(pd.to_datetime(rows["date"]).unique())
    recent_days = days[-distribution.window :]
    recent = rows[pd.to_datetime(rows["date"]).isin(recent_days)]
    out: dict[str, Any] = {
        "window": {
            "sessions": len(recent_days),
            "expected_sessions": distribution.window,
            "from": pd.Timestamp(recent_days[0]).date().isoformat() if len(recent_days) else None,
            "to": pd.Timestamp(recent_days[-1]).date().isoformat() if len(recent_days) else None,
            "rows": len(recent),
        },
        "reference": {"start": distribution.start, "end": distribution.end},
        "psi_threshold": psi_threshold,
        "null_quantile": null_quantile,
        "max_drifted_share": max_drifted_share,
        "features": {},
        "checked": 0,
        "drifted": [],
        "drifted_share": None,
        "max_psi": None,
        "drift": None,
    }
    if len(recent_days) < distribution.window:
        out["reason"] = (
            f"{len(recent_days)} sessions of features up to {run_date}, fewer than the "
            f"{distribution.window} the window needs"
        )
        return out
    for name in sorted(distribution.features):
        if name not in recent.columns:
            continue
        values = recent[name].to_numpy(np.float64)
        values = values[np.isfinite(values)]
        if not len(values):
            continue
        psi = distribution.psi(name, values)
        null = distribution.null_psi(name, null_quantile)
        threshold = max(psi_threshold, null) if null is not None else psi_threshold
        out["features"][name] = {
            "psi": psi,
            "null_psi": null,
            "threshold": threshold,
            "drifted": bool(psi > threshold),
        }
    checked = out["features"]
    out["checked"] = len(checked)
    out["drifted"] = [n for n, f in checked.items() if f["drifted"]]
    if checked:
        out["drifted_share"] = len(out["drifted"]) / len(checked)
        out["max_psi"] = max(f["psi"] for f in checked.values())
        out["drift"] = out["drifted_share"] >= max_drifted_share
    return out


def expected_session(now: pd.Timestamp | None = None, run_date: date | None = None) -> date:
    """The newest session whose bar should be stored: ``run_date``'s last session (a replay),
    else the last NYSE session completed at ``now``."""
    if run_date is not None:
        day = pd.Timestamp(run_date)
        if calendar.is_session(day):
            return day.date()
        return calendar.sessions(day - pd.Timedelta(days=10), day)[-1].date()
    return calendar.last_completed_session(now).date()


def freshness_report(
    last_dates: dict[str, pd.Timestamp], expected: date, max_age_sessions: int
) -> dict[str, Any]:
    """Each symbol's last stored bar and how many sessions it lags ``expected``."""
    symbols: dict[str, Any] = {}
    for symbol in sorted(last_dates):
        last = pd.Timestamp(last_dates[symbol]).date()
        age = max(len(calendar.sessions(last, expected)) - 1, 0) if last < expected else 0
        symbols[symbol] = {
            "last_date": last.isoformat(),
            "age_sessions": age,
            "stale": age > max_age_sessions,
        }
    stale = [s for s, v in symbols.items() if v["stale"]]
    return {
        "expected_session": expected.isoformat(),
        "max_age_sessions": max_age_sessions,
        "symbols": symbols,
        "stale": stale,
        "fresh": not stale and bool(symbols),
    }


_DAY_RE = re.compile(r"/day=(\d{4}-\d{2}-\d{2})/")


def quarantine_report(
    store: Any,
    quarantine_prefix: str,
    raw_prefix: str,
    expected: date,
    window_sessions: int,
    max_share: float,
) -> dict[str, Any]:
    """The share of rows quarantined over the last ``window_sessions`` sessions to ``expected``.

    Quarantined rows are counted by the day they were quarantined (their key's ``day=``),
    stored rows by their bar date, over the same sessions.
    """
    days = calendar.sessions(
        pd.Timestamp(expected) - pd.Timedelta(days=3 * window_sessions + 10), expected
    )
    days = days[-window_sessions:]
    first = days[0].date() if len(days) else expected
    keys = [
        key
        for key in store.list_keys(f"{quarantine_prefix.strip('/')}/")
        if (match := _DAY_RE.search(key))
        and first <= date.fromisoformat(match.group(1)) <= expected
    ]
    quarantined = 0
    reasons: dict[str, int] = {}
    for key in keys:
        frame = pd.read_parquet(io.BytesIO(store.get_bytes(key)))
        if "stage" in frame.columns:
            frame = frame[frame["stage"].astype(str) == raw_prefix]
        quarantined += len(frame)
        for reason, n in (
            frame.get("reason", pd.Series(dtype=str)).astype(str).value_counts().items()
        ):
            short = reason.split(" '")[0][:80]
            reasons[short] = reasons.get(short, 0) + int(n)
    stored_rows = len(store.read_bars(start=first, end=expected)) if len(days) else 0
    total = stored_rows + quarantined
    share = quarantined / total if total else None
    return {
        "window": {
            "sessions": len(days),
            "from": first.isoformat(),
            "to": expected.isoformat(),
        },
        "quarantined_rows": quarantined,
        "stored_rows": stored_rows,
        "share": share,
        "max_share": max_share,
        "alarm": bool(share is not None and share > max_share),
        "reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:10]),
    }
