"""Incremental feature update: raw bars in the store -> the ``features/`` table.

Only new days are recomputed. For each symbol the update reads raw bars from
``config.lookback_sessions`` sessions before its last stored feature row (EMA, RSI and MACD
have an infinite memory; 600 sessions leave a difference of ~1e-10 against a full recompute)
and writes back every row after its last stored row, plus the last ``horizon`` stored rows,
whose targets were still NaN and are now known. Symbols without stored features are computed
from their whole history.

Cross-sectional features (``xs_*``) depend on every peer of a date: the update computes the
whole universe for the new dates (see :func:`update_features`).

Then each symbol whose table changed (or whose window is missing or older than its table) gets
its latest feature window rewritten (:mod:`stockml.window`): the prediction API's only read;
and the universe's latest rows are rewritten as ONE object (``UniverseWindow``, what a
ranking reads), from those windows.

Failures stay per symbol: a symbol whose stored bars cannot give features (duplicate dates,
NaN, infinite or non-positive prices: bars stored before ingestion quarantined such rows)
is reported in ``failed`` with the reason, and the other symbols are written. A market series
(``config.market.symbols``) with such bars fails every symbol it would feed, naming the
series. :meth:`FeatureUpdateReport.raise_for_errors` then raises so that scheduled runs fail
loudly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from stockml.calendar import sessions
from stockml.errors import FeatureError
from stockml.features.build import build_features, feature_columns
from stockml.features.config import FeatureConfig
from stockml.features.sentiment import sentiment_scorer
from stockml.progress import ProgressFn
from stockml.storage import Store
from stockml.window import (
    BAR_FIELDS,
    FeatureWindow,
    UniverseWindow,
    latest_keys,
    universe_key,
    window_key,
    windows_prefix,
)

logger = logging.getLogger(__name__)

# feature rows per upsert of a backfill; symbols per window read
_WRITE_CHUNK_ROWS = 25_000
_WINDOW_CHUNK = 50


_PRICES = ["open", "high", "low", "close", "adj_close"]


@dataclass
class FeatureUpdateReport:
    """What one update did: rows written per symbol, symbols skipped and failed, and why, and
    the headline sentiment scorer used (training must have used the same one: their values differ).

    ``skipped`` is not an error (no raw bars yet, too short for the warm-up); ``failed`` is.
    """

    rows: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    partitions_written: int = 0
    windows_written: int = 0
    sentiment_scorer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"rows_written": sum(self.rows.values())}

    def raise_for_errors(self) -> None:
        """Raise when any symbol failed (after the others were written).

        Raises:
            FeatureError: listing every failed symbol and its reason.
        """
        if self.failed:
            detail = "; ".join(f"{s}: {why}" for s, why in sorted(self.failed.items()))
            raise FeatureError(f"{len(self.failed)} symbol(s) failed: {detail}")


def bar_problems(
    bars: pd.DataFrame, prices: Sequence[str] = _PRICES, missing_ok: bool = False
) -> dict[str, str]:
    """Per symbol, why its bars cannot give features (symbols without a problem are absent).

    Checks the ``prices`` columns for NaN, infinite and non-positive values, and the
    ``(symbol, date)`` keys for duplicates and missing dates. ``missing_ok``: a NaN or
    non-positive price is a missing day, not a problem (a market series: the join carries
    its last good close).
    """
    if bars.empty:
        return {}
    values = bars[list(prices)].to_numpy(dtype="float64")
    checks = {
        "missing dates": bars["date"].isna().to_numpy(),
        "infinite prices": np.isinf(values).any(axis=1),
        "duplicate dates": bars.duplicated(["symbol", "date"], keep="first").to_numpy(),
    }
    if not missing_ok:
        checks["NaN prices"] = np.isnan(values).any(axis=1)
        checks["non-positive prices"] = (values <= 0).any(axis=1)
    symbols = bars["symbol"].astype(str).to_numpy()
    found: dict[str, list[str]] = {}
    for what, mask in checks.items():
        if mask.any():
            for symbol, rows in pd.Series(bars["date"].to_numpy()[mask]).groupby(symbols[mask]):
                days = ", ".join(f"{d:%Y-%m-%d}" for d in rows.dropna().head(3))
                found.setdefault(str(symbol), []).append(
                    f"{len(rows)} bar(s) with {what}" + (f" (e.g. {days})" if days else "")
                )
    return {s: "stored bars hold " + "; ".join(whats) for s, whats in found.items()}


def _session_before(day: pd.Timestamp, n: int) -> pd.Timestamp:
    """The NYSE session ``n`` sessions before ``day`` (calendar days as a generous bound)."""
    days = sessions(day - pd.Timedelta(days=int(n * 1.6) + 30), day)
    return days[max(len(days) - 1 - n, 0)]


def update_features(
    store: Store,
    symbols: Sequence[str] | None = None,
    config: FeatureConfig | None = None,
    market_symbols: Sequence[str] | None = None,
    universe: Sequence[str] | None = None,
    progress: ProgressFn | None = None,
) -> FeatureUpdateReport:
    """Compute the features of new days and upsert them into the store's features table.

    With cross-sectional features enabled, a date's ``xs_*`` values depend on every peer of
    that date: the update computes the whole universe from the first new date of any symbol
    on (each peer with its look-back) and rewrites every row of ``symbols`` from that date on
    whose values may have changed. Normally that is just the new day; a peer whose bars
    arrived late, or a symbol new to the universe, make it rewrite more (a new symbol: every
    row of every peer). Each written symbol's serving window is rewritten too.

    Args:
        store: the data store (raw bars in, features out; news read when enabled).
        symbols: symbols whose rows to update (default: ``universe``, else every symbol with
            raw bars).
        config: feature configuration (default: code defaults).
        market_symbols: the market context series (default: ``config.market.symbols``).
        universe: the peers of the cross-sectional features (default: every symbol with raw
            bars); the market series are never peers.
        progress: called as ``progress(task, done, total)`` (``features``, ``windows``).

    Returns:
        FeatureUpdateReport: rows written per symbol; symbols skipped (no bars, too short)
        and failed (bars that cannot give features), with the reason. It never raises for
        one symbol's failure; call ``raise_for_errors()`` to fail loudly.
    """
    config = config or FeatureConfig()
    market_symbols = list(config.market.symbols if market_symbols is None else market_symbols)
    config = config.model_copy(
        update={"market": config.market.model_copy(update={"symbols": market_symbols})}
    )
    cross = config.cross_section.enabled
    listed: list[str] | None = None
    if symbols is not None or universe is not None:
        listed = list(dict.fromkeys([*(symbols or []), *(universe or [])]))
        if cross and universe is None:
            listed = None  # the peers are every symbol with raw bars
    raw_last = store.last_dates(store.raw_prefix, listed)
    if symbols is not None:
        wanted = list(symbols)
    else:
        wanted = list(universe) if universe is not None else sorted(raw_last)
    peers: list[str] = []
    if cross:
        # the market series are context, never peers
        peers = [
            s
            for s in (universe if universe is not None else sorted(raw_last))
            if s not in market_symbols
        ]
    report = FeatureUpdateReport()
    for symbol in wanted:
        if symbol not in raw_last:
            report.skipped[symbol] = "no raw bars"
    feat_last = store.last_dates(
        store.features_prefix, [s for s in dict.fromkeys([*wanted, *peers]) if s in raw_last]
    )
    todo = [
        s for s in wanted if s in raw_last and (s not in feat_last or raw_last[s] > feat_last[s])
    ]
    if not todo:
        report.windows_written = write_windows(store, wanted, config, progress=progress)
        return report
    # symbols new to the table are read whole, the others from their look-back start
    fresh = [s for s in todo if s not in feat_last]
    known = [s for s in todo if s in feat_last]
    parts = []
    if fresh:
        new_bars = store.read_bars(fresh)
        parts.append(new_bars[new_bars["symbol"].isin(_ready(new_bars, fresh, config, report))])
    # cross-sections change from the first new row of any symbol on; a symbol new to the
    # universe changes every date it has (then every peer is computed whole)
    whole = cross and any(len(p) for p in parts)
    changed_from = None if whole or not known else min(feat_last[s] for s in known)
    others = known
    if cross and (whole or known):
        others = known + [
            p
            for p in peers
            if p not in todo
            and p in raw_last
            and (changed_from is None or raw_last[p] > changed_from)
        ]
    if others:
        anchors = {} if changed_from is None else dict.fromkeys(others, changed_from)
        more = _read_from(store, others, anchors, config)
        ready = _ready(more, others, config, report, note=known)
        parts.append(more[more["symbol"].isin(ready)])
    bars = pd.concat(parts, ignore_index=True) if parts else None
    if bars is None or bars.empty:
        report.windows_written = write_windows(store, wanted, config, progress=progress)
        return report
    start = bars["date"].min()
    # the index series need their own warm-up (20 sessions) before the first row
    market_start = _session_before(start, 40)
    market = store.read_bars(market_symbols, start=market_start) if market_symbols else None
    ready = list(dict.fromkeys(bars["symbol"].astype(str)))
    # a bad market series would reach every symbol's features: name it, compute nothing
    broken = bar_problems(market, ["close"], missing_ok=True) if market is not None else {}
    bad_market = "; ".join(f"market series {m}: {why}" for m, why in sorted(broken.items()))
    if bad_market:
        report.failed.update({s: bad_market for s in ready})
    else:
        report.failed.update(bar_problems(bars))
    ready = [s for s in ready if s not in report.failed]
    bars = bars[bars["symbol"].isin(ready)]
    news = None
    if config.news.enabled and ready:
        news = store.read_table(store.news_prefix, ready, start=start)
        news = news if len(news) else None
    features = _build_each_apart_on_failure(bars, market, news, config, report, progress)
    if features.empty:
        _log_failures(report)
        report.windows_written = write_windows(store, wanted, config, progress=progress)
        return report
    if news is not None:
        report.sentiment_scorer = sentiment_scorer()
    # new rows, and the stored rows whose targets were NaN (their future is now known)
    keep = features["symbol"].isin(fresh).to_numpy().copy()
    for symbol in known:
        rows = (features["symbol"] == symbol).to_numpy()
        dates = features.loc[rows, "date"]
        stored = dates[dates <= feat_last[symbol]]
        first_new = stored.iloc[-config.horizon] if len(stored) >= config.horizon else dates.min()
        keep |= rows & (features["date"] >= first_new).to_numpy()
    if cross:
        # and every row whose cross-section may have changed
        keep |= True if whole else (features["date"] > changed_from).to_numpy()
    keep &= features["symbol"].isin(wanted).to_numpy()
    out = features[keep].reset_index(drop=True)
    report.partitions_written = _upsert(store, out, progress)
    report.rows = {str(k): int(v) for k, v in out.groupby("symbol").size().items()}
    report.windows_written = write_windows(
        store, wanted, config, changed=list(report.rows), progress=progress
    )
    _log_failures(report)
    logger.info(
        "features updated: %d rows of %d symbols, %d partitions, %d windows, %d skipped, %d failed",
        sum(report.rows.values()),
        len(report.rows),
        report.partitions_written,
        report.windows_written,
        len(report.skipped),
        len(report.failed),
    )
    return report


def _upsert(store: Store, rows: pd.DataFrame, progress: ProgressFn | None) -> int:
    """Upsert feature rows; a large write (a backfill) goes in chunks of whole symbols.

    A daily run's few rows stay ONE upsert (one shared delta object); a backfill's chunks
    bound memory and let the progress bar move.
    """
    symbols = rows["symbol"].to_numpy()
    bounds = np.flatnonzero(np.r_[True, symbols[1:] != symbols[:-1], True])
    total = len(bounds) - 1
    written, lo, done = 0, 0, 0
    while lo < len(rows):
        # whole symbols, about _WRITE_CHUNK_ROWS rows (at least one symbol)
        hi = bounds[np.searchsorted(bounds, lo + _WRITE_CHUNK_ROWS, side="right") - 1]
        hi = hi if hi > lo else bounds[np.searchsorted(bounds, lo, side="right")]
        written += store.upsert_table(store.features_prefix, rows.iloc[lo:hi]).partitions_written
        done += int(np.searchsorted(bounds, hi) - np.searchsorted(bounds, lo))
        lo = hi
        if progress is not None:
            progress("write", done, total)
    return written


def _read_from(
    store: Store,
    symbols: Sequence[str],
    anchors: dict[str, pd.Timestamp],
    config: FeatureConfig,
) -> pd.DataFrame:
    """Raw bars of ``symbols``: from ``lookback_sessions`` before the earliest anchor for the
    anchored ones (one read), the whole history for the others (a second read)."""
    anchored = [s for s in symbols if s in anchors]
    whole = [s for s in symbols if s not in anchors]
    parts = []
    if anchored:
        first = min(anchors[s] for s in anchored)
        parts.append(
            store.read_bars(anchored, start=_session_before(first, config.lookback_sessions))
        )
    if whole:
        parts.append(store.read_bars(whole))
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def _ready(
    bars: pd.DataFrame,
    symbols: Sequence[str],
    config: FeatureConfig,
    report: FeatureUpdateReport,
    note: Sequence[str] | None = None,
) -> list[str]:
    """The symbols with more bars than the warm-up; the others (of ``note``) noted as skipped."""
    counts = bars.groupby("symbol").size()
    ready = [s for s in symbols if counts.get(s, 0) > config.warmup_rows()]
    for symbol in set(symbols if note is None else note) - set(ready):
        report.skipped[symbol] = (
            f"{int(counts.get(symbol, 0))} bars, warm-up needs {config.warmup_rows() + 1}"
        )
    return ready


def _build_each_apart_on_failure(
    bars: pd.DataFrame,
    market: pd.DataFrame | None,
    news: pd.DataFrame | None,
    config: FeatureConfig,
    report: FeatureUpdateReport,
    progress: ProgressFn | None = None,
) -> pd.DataFrame:
    """``build_features`` of all symbols at once; if that fails, find the failing symbols.

    The second pass isolates what the checks before it did not foresee: each symbol is built
    alone only to find those that fail on their own (reported failed); the others are then
    built together again, since a symbol's cross-sectional features depend on its peers.
    """
    if bars.empty:
        return pd.DataFrame()
    try:
        return build_features(bars, market, news, config, progress=progress)
    except FeatureError as exc:
        logger.warning("features of all symbols failed (%s); checking each symbol alone", exc)
    for symbol, rows in bars.groupby("symbol", sort=True):
        try:
            build_features(rows, market, news, config)
        except FeatureError as exc:
            report.failed[str(symbol)] = str(exc)
    good = bars[~bars["symbol"].isin(list(report.failed))]
    return build_features(good, market, news, config) if len(good) else pd.DataFrame()


def _log_failures(report: FeatureUpdateReport) -> None:
    for symbol, why in sorted(report.failed.items()):
        logger.error("features %s failed: %s", symbol, why)


def write_windows(
    store: Store,
    symbols: Sequence[str] | None = None,
    config: FeatureConfig | None = None,
    changed: Sequence[str] = (),
    progress: ProgressFn | None = None,
) -> int:
    """Rewrite the latest feature window of each symbol whose window is missing or stale.

    A window is stale when its last date is older than the symbol's last stored feature row,
    or when the symbol is in ``changed`` (rows were rewritten, e.g. their cross-section).
    Its rows are read back from the ``features/`` table (the stored values, exactly). The new
    window is written before the old one is deleted: a reader always finds one.

    Args:
        store: the data store.
        symbols: symbols to check (default: every symbol with features).
        config: ``serving_rows`` (how many rows) and the feature columns.
        changed: symbols whose rows were just written (their window is rewritten).
        progress: called as ``progress("windows", done, total)``.

    Returns:
        How many windows were written.

    After them, the universe's latest-rows object is rewritten (``write_universe_window``),
    or written when missing.
    """
    config = config or FeatureConfig()
    last = store.last_dates(store.features_prefix, symbols)
    held = store.list_keys(windows_prefix(store.features_prefix))
    current = latest_keys(store.features_prefix, held)
    rewritten = set(changed)
    todo = sorted(
        s
        for s, day in last.items()
        if s in rewritten or s not in current or current[s][0] < day.date()
    )
    if not todo:
        if current and not store.list_keys(universe_key(store.features_prefix)):
            write_universe_window(store, config, {})
        return 0
    # ~1.5 calendar days per session, plus holidays
    span = pd.Timedelta(days=int(config.serving_rows * 1.6) + 30)
    stale = []
    done = 0
    fresh: dict[str, FeatureWindow] = {}
    # a chunk of symbols at a time: bounded memory, and progress while a universe is read
    for i in range(0, len(todo), _WINDOW_CHUNK):
        chunk = todo[i : i + _WINDOW_CHUNK]
        start = min(last[s] for s in chunk) - span
        frame = store.read_table(store.features_prefix, chunk, start=start)
        # the raw bar of each row rides along for charts (the API's /plot candlesticks)
        raw = store.read_bars(chunk, start=start)[["symbol", "date", *BAR_FIELDS]]
        frame = frame.merge(raw, on=["symbol", "date"], how="left")
        names = [c for c in feature_columns(config) if c in frame.columns]
        for symbol, rows in frame.groupby("symbol", sort=True):
            window = FeatureWindow.from_frame(
                rows.sort_values("date").tail(config.serving_rows), names
            )
            key = window_key(store.features_prefix, str(symbol), window.last_date)
            store.put_bytes(key, window.to_bytes())
            fresh[str(symbol)] = window.tail(config.ranking_rows)
            prefix = key.rsplit("/", 1)[0] + "/"
            stale += [k for k in held if k.startswith(prefix) and k != key]
            done += 1
            if progress is not None:
                progress("windows", done, len(todo))
    store.delete_keys(stale)
    write_universe_window(store, config, fresh)
    return len(todo)


def write_universe_window(
    store: Store, config: FeatureConfig, fresh: dict[str, FeatureWindow]
) -> int:
    """Rewrite ``<features_prefix>/_universe/latest.npz``: the last ``ranking_rows`` rows of
    every symbol's window, the market series excluded.

    Args:
        store: the data store.
        config: ``ranking_rows``, the market symbols and the feature columns.
        fresh: windows just written (the others are read back from the store).

    Returns:
        How many symbols the object holds (0: none, nothing written).
    """
    rows, market = config.ranking_rows, set(config.market.symbols)
    names = tuple(c for c in feature_columns(config))
    windows = {s: w.tail(rows) for s, w in fresh.items() if s not in market}
    held = latest_keys(
        store.features_prefix, store.list_keys(windows_prefix(store.features_prefix))
    )
    for symbol, (_day, key) in sorted(held.items()):
        if symbol not in market and symbol not in windows:
            windows[symbol] = FeatureWindow.from_bytes(store.get_bytes(key)).tail(rows)
    # a window written under another feature configuration cannot be ranked with the others
    stale = sorted(s for s, w in windows.items() if w.columns != names)
    if stale:
        logger.warning(
            "%d window(s) have other feature columns and are left out of the universe "
            "object until rewritten: %s",
            len(stale),
            ", ".join(stale[:10]),
        )
    kept = [w for w in windows.values() if w.columns == names and len(w)]
    if not kept:
        return 0
    universe = UniverseWindow.from_windows(kept, rows)
    store.put_bytes(universe_key(store.features_prefix), universe.to_bytes())
    return len(kept)
