"""Backfill vs 1-new-day incremental ingestion against a local moto_server.

The universe is a synthetic scale-up of the embedded MSFT history (pmdarima): N tickers, each
a rescaled copy of its last Y years, built before the clock starts so that the timed runs
measure ingestion, not the synthetic provider. The backfill ingests everything but the last
session; the incremental run then ingests that one session (the daily job). The incremental
run lists the newest year folder only (the store is partitioned year first) and appends the
new session of each batch of symbols as one shared delta object (no GET: the overlap day is
checked against the digest in the object name). Every ``MAX_DELTAS + 1``-th daily run also
folds the deltas into the partitions (one GET and one PUT per symbol); this benchmark times an
ordinary day, and counts the S3 requests of each daily run (a cost that does not depend on how
busy the machine is). Every write is checked for concurrent writers with one more round of LISTs
after its PUTs (see stockml.storage).

Then, with ``--concurrent`` (default), the next session is ingested by two writers at once (two
threads, each with its own Store, as an SQS batch redelivered while its first delivery runs),
and the store must still hold every row once.

    python benchmarks/ingest.py                       # small default, ~1 min here
    python benchmarks/ingest.py --symbols 500 --years 20   # the goal: incremental <= 5%

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from collections import Counter
from datetime import date

import boto3
import pandas as pd

from stockml.ingest import IngestReport, ingest
from stockml.local import start_moto_server
from stockml.providers.base import Provider, RetryPolicy
from stockml.providers.sample import SampleProvider
from stockml.storage import MAX_DELTAS, Store


class ScaledCopies(Provider):
    """N tickers, each the MSFT history times a per-ticker factor; serves up to ``last_day``."""

    name = "scaled-copies"

    def __init__(self, base: pd.DataFrame, last_day: pd.Timestamp) -> None:
        super().__init__(retry=RetryPolicy(max_retries=0))
        self.base = base
        self.days = base["date"].to_numpy()
        self.last_day = last_day
        self._scaled: dict[str, pd.DataFrame] = {}

    def scale(self, symbols: list[str]) -> None:
        """Build every ticker's history up front, so the timed runs measure ingestion only."""
        for symbol in symbols:
            factor = 1.0 + int(symbol[1:]) / 100.0
            bars = self.base.copy()
            for column in ["open", "high", "low", "close", "adj_close"]:
                bars[column] = bars[column] * factor
            bars["symbol"] = symbol
            self._scaled[symbol] = bars

    def _fetch_bars(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        # like a real API: only the sessions asked for
        upto = min(pd.Timestamp(end), self.last_day)
        lo = self.days.searchsorted(pd.Timestamp(start).to_datetime64(), side="left")
        hi = self.days.searchsorted(upto.to_datetime64(), side="right")
        return self._scaled[symbol].iloc[lo:hi]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--workers", type=int, default=16, help="symbols ingested in parallel")
    parser.add_argument(
        "--concurrent",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also ingest one session with two writers at once",
    )
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")

    msft = SampleProvider().fetch_bars("MSFT", date(1986, 1, 1), date(2017, 12, 31))
    last = msft["date"].iloc[-1]
    base = msft[msft["date"] > last - pd.DateOffset(years=args.years)].reset_index(drop=True)
    symbols = [f"S{i:04d}" for i in range(args.symbols)]

    server = start_moto_server()
    try:
        bucket = "bench-ingest"
        boto3.client("s3", endpoint_url=server.url, region_name="us-east-1").create_bucket(
            Bucket=bucket
        )
        store = Store(bucket, endpoint_url=server.url, max_workers=args.workers)
        # "now" = the evening of a session, after the 16:00 New York close
        evening = pd.Timedelta(hours=23)

        # the backfill stops MAX_DELTAS + 1 (+ 1) sessions early; then one daily run per
        # session: MAX_DELTAS ordinary days (a shared delta object per batch), a compaction
        # day (and a day ingested by two writers at once)
        extra = 1 if args.concurrent else 0
        days = list(base["date"].iloc[len(base) - (MAX_DELTAS + 1 + extra) :])
        provider = ScaledCopies(base, last_day=days[0] - pd.Timedelta(days=1))
        provider.scale(symbols)
        requests: Counter[str] = Counter()
        lock = threading.Lock()

        def count(model: object, **_: object) -> None:
            with lock:
                requests[model.name] += 1  # type: ignore[attr-defined]

        def run(last_day: pd.Timestamp) -> tuple[IngestReport, float]:
            """Ingest up to ``last_day`` with a new Store (as in a new Lambda: nothing cached)."""
            provider.last_day = last_day
            fresh = Store(bucket, endpoint_url=server.url, max_workers=args.workers)
            fresh.objects.client.meta.events.register("before-call.s3", count)
            t0 = time.perf_counter()
            report = ingest(
                fresh,
                provider,
                symbols,
                start=base["date"].iloc[0],
                now=(last_day + evening).tz_localize("UTC"),
                max_workers=args.workers,
            )
            return report, time.perf_counter() - t0

        backfill, backfill_s = run(provider.last_day)
        daily_s = []
        daily_requests = []
        for day in days[: MAX_DELTAS + 1]:
            requests.clear()
            report, seconds = run(day)
            daily_s.append(seconds)
            daily_requests.append(dict(requests))
            assert not report.failed, report.failed[:3]
            assert report.totals()["written"] == len(symbols), report.totals()
        delta_objects = len(store.list_keys("raw/_delta/"))

        concurrent_s = None
        concurrent_requests: dict[str, int] = {}
        if args.concurrent:
            # two writers, the same new session, started together: each with its own Store
            requests.clear()
            provider.last_day = days[-1]
            outcomes: list[IngestReport] = []
            barrier = threading.Barrier(2)

            def writer() -> None:
                fresh = Store(bucket, endpoint_url=server.url, max_workers=args.workers)
                fresh.objects.client.meta.events.register("before-call.s3", count)
                barrier.wait()
                outcomes.append(
                    ingest(
                        fresh,
                        provider,
                        symbols,
                        start=base["date"].iloc[0],
                        now=(days[-1] + evening).tz_localize("UTC"),
                        max_workers=args.workers,
                    )
                )

            threads = [threading.Thread(target=writer) for _ in range(2)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            concurrent_s = time.perf_counter() - t0
            concurrent_requests = dict(requests)
            assert len(outcomes) == 2 and not any(o.failed for o in outcomes)

        back = store.read_bars()
        assert not back.duplicated(["symbol", "date"]).any(), "a row is stored twice"
        assert len(back) == len(symbols) * len(base), (len(back), len(symbols) * len(base))
        summary = store.summary()
        rows = int(summary["rows"].sum())
        assert not backfill.failed, "a symbol failed"
        assert rows == len(symbols) * len(base), (rows, len(symbols) * len(base))
    finally:
        server.stop()

    incremental_s = statistics.median(daily_s[:-1])
    compaction_s = daily_s[-1]
    amortised_s = statistics.fmean(daily_s)
    ratio = incremental_s / backfill_s
    print(
        f"universe: {len(symbols)} symbols x {args.years} years = {rows} rows "
        f"({len(base)} sessions each, {int(summary['partitions'].sum())} partitions)"
    )
    print(f"backfill:    {backfill_s:8.2f} s  ({backfill.totals()['written']} rows written)")
    print(
        f"incremental: {incremental_s:8.2f} s  (1 new session x {len(symbols)} symbols; median "
        f"of {len(daily_s) - 1} ordinary days: {', '.join(f'{t:.2f}' for t in daily_s[:-1])})"
    )
    print(
        f"compaction day: {compaction_s:5.2f} s  (every {len(daily_s)}th run; "
        f"{delta_objects} delta object(s) left after it)"
    )
    print(f"incremental / backfill = {ratio:.2%}  (goal at 500 x 20: <= 5%)")
    print(f"amortised over {len(daily_s)} runs: {amortised_s / backfill_s:.2%} of the backfill")
    ordinary = daily_requests[len(daily_requests) // 2]
    print(f"S3 requests of an ordinary day: {_requests(ordinary)}")
    print(f"S3 requests of the compaction day: {_requests(daily_requests[-1])}")
    if concurrent_s is not None:
        print(
            f"one session by 2 writers at once: {concurrent_s:5.2f} s, every row stored once; "
            f"S3 requests of both: {_requests(concurrent_requests)}"
        )
    print(
        json.dumps(
            {
                "symbols": len(symbols),
                "years": args.years,
                "rows": rows,
                "workers": args.workers,
                "backfill_s": round(backfill_s, 3),
                "incremental_s": round(incremental_s, 3),
                "compaction_day_s": round(compaction_s, 3),
                "amortised_incremental_s": round(amortised_s, 3),
                "incremental_to_backfill_ratio": round(ratio, 4),
                "amortised_to_backfill_ratio": round(amortised_s / backfill_s, 4),
                "ordinary_day_requests": ordinary,
                "compaction_day_requests": daily_requests[-1],
                "concurrent_day_s": None if concurrent_s is None else round(concurrent_s, 3),
                "concurrent_day_requests": concurrent_requests or None,
            }
        )
    )


def _requests(counts: dict[str, int]) -> str:
    return (
        f"{sum(counts.values())} (" + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")"
    )


if __name__ == "__main__":
    main()
