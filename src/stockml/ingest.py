"""Incremental, idempotent ingestion of daily bars into the store, and the scheduled fan-out.

Per symbol, :func:`ingest`:

1. finds the last stored date (object names only, no data read);
2. does not call the provider at all when no NYSE session closed since then (a re-run the
   same evening, at the weekend or on a holiday is free);
3. otherwise fetches from the last stored date (one day of overlap) to the last completed
   session;
4. upserts the rows by (symbol, date), bad rows to quarantine, with the overlap day marked
   "expected unchanged": a split changes the (split-adjusted) ``close`` of past days and a
   dividend changes their ``adj_close``. When the overlap bar differs from the stored one,
   the store writes nothing for that symbol (so a crash cannot leave a mixed basis), and
   its whole history is re-fetched and spliced onto the stored one (:func:`splice_refetch`):
   the provider's rows replace the stored rows of the same days; stored days it did not
   return (a shorter history) are kept, rescaled by the factors measured on the days both
   hold, never dropped. All of it is written as one object (readers see the old basis or
   the new one, never a mix) and recorded under ``<raw>/_adjustments/``.

One symbol's failure does not stop the others: an invalid symbol, a provider error, a
provider that breaks in an unexpected way, a store write that fails for one symbol are
recorded in that symbol's report and the others are written. Bad rows (an unparseable date
or number, a NaN, infinite or non-positive price, an equity bar on an NYSE holiday, a
duplicate date) never fail a symbol: they go to quarantine and the rest of its rows are
stored. :meth:`IngestReport.raise_for_errors` then raises so that scheduled runs fail loudly
(Lambda retries, DLQ, alarms).

The fan-out: the schedule's "planner" call splits the universe into batches of
``ingest.batch_size`` symbols and sends one SQS message per batch; each message is then
ingested once by :func:`ingest_sqs_message` (the Lambda handler answers SQS with the messages
that failed).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any, TypeVar

import pandas as pd

from stockml.calendar import last_completed_session, sessions
from stockml.errors import IngestError, StockmlError
from stockml.idempotency import DEFAULT_LEASE_S, Once, run_once
from stockml.providers.base import Provider
from stockml.s3 import encode_symbol
from stockml.schemas import is_index, off_session, validate_bars
from stockml.settings import Settings
from stockml.storage import Store, UpsertReport
from stockml.symbols import check_symbol

logger = logging.getLogger(__name__)

_DEFAULT_WORKERS = 8
# symbols validated and upserted together: bounds memory during a backfill
_UPSERT_CHUNK = 100

T = TypeVar("T")


@dataclass
class SymbolReport:
    """What ingestion did for one symbol.

    Attributes:
        symbol: the ticker.
        fetched: rows the provider returned.
        written: rows new to the store or changed in it.
        quarantined: rows rejected by validation.
        flagged: index bars dated on an NYSE holiday (kept; an equity's are quarantined).
        skipped: True when no session closed since the last stored date (no provider call).
        readjusted: True when a split/dividend made the full history be re-fetched.
        adjustment: what the re-fetch did (:meth:`Splice.record`), when ``readjusted``.
        error: the failure, ``"ErrorType: message"``; None when the symbol succeeded.
    """

    symbol: str
    fetched: int = 0
    written: int = 0
    quarantined: int = 0
    flagged: int = 0
    skipped: bool = False
    readjusted: bool = False
    adjustment: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class IngestReport:
    """The outcome of one ingestion run: one :class:`SymbolReport` per symbol, in input order."""

    end: pd.Timestamp
    symbols: list[SymbolReport] = field(default_factory=list)

    @property
    def failed(self) -> list[SymbolReport]:
        """Symbols that failed."""
        return [s for s in self.symbols if s.error is not None]

    def totals(self) -> dict[str, int]:
        """Summed counts over all symbols."""
        return {
            "symbols": len(self.symbols),
            "fetched": sum(s.fetched for s in self.symbols),
            "written": sum(s.written for s in self.symbols),
            "quarantined": sum(s.quarantined for s in self.symbols),
            "flagged": sum(s.flagged for s in self.symbols),
            "skipped": sum(s.skipped for s in self.symbols),
            "readjusted": sum(s.readjusted for s in self.symbols),
            "failed": len(self.failed),
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "end": self.end.date().isoformat(),
            "totals": self.totals(),
            "symbols": [asdict(s) for s in self.symbols],
        }

    def raise_for_errors(self) -> None:
        """Raise when any symbol failed (after all symbols were processed).

        Raises:
            IngestError: listing every failed symbol and its error.
        """
        if self.failed:
            detail = "; ".join(f"{s.symbol}: {s.error}" for s in self.failed)
            raise IngestError(
                f"{len(self.failed)} of {len(self.symbols)} symbol(s) failed: {detail}"
            )


def ingest(
    store: Store,
    provider: Provider,
    symbols: Sequence[str],
    start: date | str | pd.Timestamp,
    end: date | str | pd.Timestamp | None = None,
    now: pd.Timestamp | None = None,
    max_workers: int = _DEFAULT_WORKERS,
    progress: Callable[[str], None] | None = None,
) -> IngestReport:
    """Bring the stored bars of ``symbols`` up to date; see the module docstring.

    Symbols are fetched in parallel threads and upserted together in chunks (one validation,
    one store write per symbol and year touched), so a daily run costs one LIST and about one
    PUT per symbol (a small delta object; see :mod:`stockml.storage`).

    Args:
        store: where bars live.
        provider: where bars come from (often a FallbackProvider).
        symbols: tickers to update.
        start: first date of a symbol's history when nothing is stored yet.
        end: last date wanted (default and upper bound: the last completed NYSE session).
        now: the current time (default: now), for the last completed session.
        max_workers: provider calls in parallel (I/O bound).
        progress: called with each symbol once its fetch is done.

    Returns:
        IngestReport: per-symbol counts and errors. It never raises for one symbol's
        failure; call ``raise_for_errors()`` to fail loudly.
    """
    target = last_completed_session(now)
    if end is not None:
        target = min(target, pd.Timestamp(end).normalize())
    first = pd.Timestamp(start).normalize()
    everyone = list(dict.fromkeys(symbols))
    reports = {s: SymbolReport(symbol=s) for s in everyone}
    for symbol in everyone:
        try:
            check_symbol(symbol)
        except StockmlError as exc:  # never fetched, never written
            _fail(reports[symbol], exc)
            if progress is not None:
                progress(symbol)
    symbols = [s for s in everyone if reports[s].error is None]
    # one listing of the newest year folders serves the whole run: this run is the only
    # writer of these symbols
    parts = store.list_parts(symbols=symbols, latest=True)
    last = store.last_dates(parts=parts)

    def fetch(symbol: str) -> pd.DataFrame | None:
        try:
            return _fetch_missing(provider, reports[symbol], first, target, last.get(symbol))
        except Exception as exc:  # noqa: BLE001 - one symbol's failure, whatever it is, stays its own
            _fail(reports[symbol], exc)
            return None
        finally:
            if progress is not None:
                progress(symbol)

    # one pool for the run: starting threads per chunk costs more than a day's fetches
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(symbols)))) as pool:
        for i in range(0, len(symbols), _UPSERT_CHUNK):
            chunk = symbols[i : i + _UPSERT_CHUNK]
            fetched = dict(zip(chunk, pool.map(fetch, chunk), strict=True))
            frames = {s: f for s, f in fetched.items() if f is not None and len(f)}
            if not frames:
                continue
            # the overlap day must match what is stored; if not, the symbol's basis changed
            overlap = {(s, last[s]) for s in frames if s in last}
            try:
                upserted = [
                    store.upsert_bars(
                        pd.concat(frames.values()), expect_unchanged=overlap, parts=parts
                    )
                ]
            except Exception as exc:  # noqa: BLE001 - retried symbol by symbol below
                logger.warning(
                    "ingest: the write of %d symbol(s) failed (%s: %s); writing them one by one",
                    len(frames),
                    type(exc).__name__,
                    exc,
                )
                upserted = _upsert_each(store, frames, overlap, reports)
            for s in frames:
                if reports[s].error is None:
                    reports[s].written = sum(
                        u.new_by_symbol.get(s, 0) + u.changed_by_symbol.get(s, 0) for u in upserted
                    )
                    reports[s].quarantined = sum(
                        u.quarantined_by_symbol.get(s, 0) for u in upserted
                    )
            for s in sorted(set().union(*(u.mismatched for u in upserted))):
                _readjust(store, provider, reports[s], first, target, last[s])

    result = IngestReport(end=target, symbols=[reports[s] for s in everyone])
    logger.info("ingest up to %s: %s", target.date(), result.totals())
    return result


def _fail(report: SymbolReport, exc: Exception) -> None:
    """Record ``exc`` as the symbol's failure (an unexpected error is logged with its traceback)."""
    report.error = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, StockmlError):
        logger.error("ingest %s failed: %s", report.symbol, report.error)
    else:
        logger.exception("ingest %s failed unexpectedly: %s", report.symbol, report.error)


def _upsert_each(
    store: Store,
    frames: dict[str, pd.DataFrame],
    overlap: set[tuple[str, pd.Timestamp]],
    reports: dict[str, SymbolReport],
) -> list[UpsertReport]:
    """Upsert symbol by symbol after a joint write failed: only the failing symbols fail.

    Each write lists the store afresh (no shared listing): the failed joint write may have
    written some of its objects before it failed.
    """
    done = []
    for symbol, bars in frames.items():
        try:
            done.append(
                store.upsert_bars(bars, expect_unchanged={k for k in overlap if k[0] == symbol})
            )
        except Exception as exc:  # noqa: BLE001 - this symbol's failure stays its own
            _fail(reports[symbol], exc)
    return done


def _fetch_missing(
    provider: Provider,
    report: SymbolReport,
    start: pd.Timestamp,
    end: pd.Timestamp,
    last: pd.Timestamp | None,
) -> pd.DataFrame | None:
    """The bars to upsert for one symbol (from the overlap day on), or None when up to date."""
    if last is None:
        if start > end:
            report.skipped = True
            return None
        bars = provider.fetch_bars(report.symbol, start.date(), end.date())
    elif len(sessions(last + pd.Timedelta(days=1), end)) == 0:
        # nothing closed since the last stored day: do not even ask the provider
        report.skipped = True
        return None
    else:
        bars = provider.fetch_bars(report.symbol, last.date(), end.date())
    report.fetched = len(bars)
    if is_index(report.symbol) and len(bars):
        report.flagged = int(off_session(bars).sum())
    return bars


@dataclass(frozen=True)
class Splice:
    """A re-fetched history spliced onto the stored one (see :func:`splice_refetch`).

    Attributes:
        bars: the rows to write: the provider's, and the stored days it did not return,
            rescaled.
        replaced: stored days the provider returned again (its rows replace them).
        kept: stored days it did not return: kept, rescaled by the factors.
        price_factor: applied to the kept rows' open, high, low and close (volume is divided
            by it: a 2:1 split halves prices and doubles share counts).
        adj_factor: applied to the kept rows' adj_close.
        anchor_days: days both histories hold, from which the factors come (0: none, so the
            kept rows could not be rescaled and keep their stored values).
    """

    bars: pd.DataFrame
    replaced: int
    kept: int
    price_factor: float
    adj_factor: float
    anchor_days: int

    def record(self) -> dict[str, Any]:
        """A JSON-ready summary (the report's ``adjustment``, the stored record)."""
        return {
            "replaced": self.replaced,
            "kept": self.kept,
            "price_factor": self.price_factor,
            "adj_factor": self.adj_factor,
            "anchor_days": self.anchor_days,
        }


def splice_refetch(stored: pd.DataFrame, fetched: pd.DataFrame) -> Splice:
    """Splice a symbol's re-fetched history (after a split or dividend) onto its stored one.

    The overlap day changed because the provider re-adjusted the past for an event after
    every stored day, so one factor applies to all stored days. The provider's rows replace
    the stored rows of the same days; stored days it did not return (a provider with a window
    limit, a CSV export of recent rows) are kept and rescaled by the median day-by-day ratio
    on the days both hold (``close`` for the prices, ``adj_close`` for the adjusted close), so
    the series stays continuous. A correction of single days leaves the median at 1.

    Args:
        stored: the symbol's stored bars (bar schema).
        fetched: the provider's valid bars of the same symbol.
    """
    days = pd.Index(fetched["date"])
    common = stored.merge(fetched, on="date", suffixes=("_old", "_new"))
    price = adj = 1.0
    if len(common):
        price = float((common["close_new"] / common["close_old"]).median())
        adj = float((common["adj_close_new"] / common["adj_close_old"]).median())
    kept = stored[~stored["date"].isin(days)].copy()
    if len(kept) and (price != 1.0 or adj != 1.0):
        kept[["open", "high", "low", "close"]] *= price
        kept["adj_close"] *= adj
        kept["volume"] /= price
    bars = pd.concat([kept, fetched], ignore_index=True).sort_values("date")
    return Splice(
        bars=bars.reset_index(drop=True),
        replaced=int(stored["date"].isin(days).sum()),
        kept=len(kept),
        price_factor=price,
        adj_factor=adj,
        anchor_days=len(common),
    )


def _readjust(
    store: Store,
    provider: Provider,
    report: SymbolReport,
    start: pd.Timestamp,
    end: pd.Timestamp,
    last: pd.Timestamp,
) -> None:
    """Re-fetch a symbol whose adjustment basis changed; splice it on, never dropping rows."""
    logger.warning(
        "%s: the provider's bar of %s differs from the stored one (split/dividend): "
        "re-fetching the whole history",
        report.symbol,
        last.date(),
    )
    try:
        fetched = provider.fetch_bars(report.symbol, start.date(), end.date())
        checked = validate_bars(fetched)
        if len(checked.rejected):
            store.write_quarantine(checked.rejected, stage=store.raw_prefix)
        splice = splice_refetch(store.read_bars([report.symbol]), checked.valid)
        # one object: readers see the old basis or the new one, never a mix of the two
        upserted = store.upsert_bars(splice.bars, atomic=True)
        store.compact(store.raw_prefix, [report.symbol])
        record = {"symbol": report.symbol, "overlap_day": f"{last:%Y-%m-%d}", **splice.record()}
        store.put_bytes(
            f"{store.raw_prefix}/_adjustments/symbol={encode_symbol(report.symbol)}/"
            f"{pd.Timestamp.now(tz='UTC'):%Y%m%dT%H%M%S%f}.json",
            json.dumps(record).encode(),
        )
    except StockmlError as exc:
        report.error = f"{type(exc).__name__}: {exc}"
        return
    if splice.kept and not splice.anchor_days:
        logger.warning(
            "%s: %d stored day(s) the re-fetch lacks are kept as stored: no common day to "
            "rescale them by",
            report.symbol,
            splice.kept,
        )
    report.fetched += len(fetched)
    report.written = upserted.rows_new + upserted.rows_changed
    report.quarantined += len(checked.rejected)
    report.readjusted = True
    report.adjustment = splice.record()


# ---------------------------------------------------------------------- entry points


def plan_batches(symbols: Sequence[str], batch_size: int) -> list[list[str]]:
    """Split the universe into batches of at most ``batch_size`` symbols (order kept)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    unique = list(dict.fromkeys(symbols))
    return [unique[i : i + batch_size] for i in range(0, len(unique), batch_size)]


def ingest_symbols(
    settings: Settings,
    symbols: Sequence[str] | None = None,
    start: date | str | None = None,
    provider: Provider | None = None,
    now: pd.Timestamp | None = None,
    progress: Callable[[str], None] | None = None,
    store: Store | None = None,
) -> IngestReport:
    """Ingest ``symbols`` (default: the configured universe) with the configured store/providers."""
    from stockml.providers import build_providers

    return ingest(
        store or Store.from_settings(settings.store),
        provider or build_providers(settings),
        symbols or settings.ingest.symbols,
        start or settings.ingest.start,
        now=now,
        progress=progress,
    )


def enqueue_universe(settings: Settings, sqs: Any | None = None) -> dict[str, Any]:
    """The planner: send the universe to the ingest queue as batches of ``ingest.batch_size``.

    Args:
        settings: ``ingest.symbols``, ``ingest.batch_size``, ``ingest.queue_url``.
        sqs: a boto3 SQS client (default: a new one; endpoint from AWS_ENDPOINT_URL_SQS).

    Returns:
        ``{"batches": n, "symbols": m, "queue_url": url}``.

    Raises:
        IngestError: SQS refused some messages.
    """
    import boto3

    queue_url = settings.ingest.queue_url
    if not queue_url:
        raise IngestError("ingest.queue_url is not set: the planner has no queue to fan out to")
    sqs = sqs or boto3.client("sqs", region_name=settings.store.region)
    batches = plan_batches(settings.ingest.symbols, settings.ingest.batch_size)
    entries = [
        {"Id": str(i), "MessageBody": json.dumps({"symbols": b})} for i, b in enumerate(batches)
    ]
    for i in range(0, len(entries), 10):  # SQS takes at most 10 messages per call
        answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries[i : i + 10])
        if answer.get("Failed"):
            raise IngestError(
                f"SQS refused {len(answer['Failed'])} batch message(s): {answer['Failed']}"
            )
    logger.info("planned %d batch(es) of %d symbol(s)", len(batches), len(settings.ingest.symbols))
    return {"batches": len(batches), "symbols": sum(map(len, batches)), "queue_url": queue_url}


def ingest_sqs_message(
    record: dict[str, Any],
    settings: Settings,
    store: Store,
    now: pd.Timestamp | None = None,
    lease_s: float = DEFAULT_LEASE_S,
) -> Once:
    """Ingest one SQS message's batch unless a delivery of the same message did or does.

    Idempotent per message id (:func:`stockml.idempotency.run_once`): a redelivery while the
    first delivery runs raises :class:`~stockml.idempotency.AlreadyRunningError`; one after it
    finished returns that delivery's totals (``ran`` False) without fetching or writing
    anything. Any exception means: return the message to the queue (SQS retries it later).

    Args:
        record: one SQS record (``messageId``, ``body``) as Lambda delivers it.
        settings: providers and ingestion settings.
        store: where the bars and the message's marker are written.
        now: the current time (default: now).
        lease_s: how long this delivery may still run (Lambda: its remaining time).

    Raises:
        AlreadyRunningError: another delivery is processing it.
        IngestError: a symbol failed (the marker says failed: the next delivery runs it).
        KeyError, ValueError: the body is not ``{"symbols": [...]}`` JSON.
    """
    body = json.loads(record["body"])
    symbols, start = body["symbols"], body.get("start")

    def work() -> dict[str, int]:
        report = ingest_symbols(settings, symbols=symbols, start=start, now=now, store=store)
        report.raise_for_errors()
        return report.totals()

    return run_once(store, record["messageId"], work, lease_s=lease_s)
