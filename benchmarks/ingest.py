"""Backfill vs 1-new-day incremental ingestion against a local moto_server.

The universe is a synthetic scale-up of the embedded MSFT history (pmdarima): N tickers, each
a rescaled copy of its last Y years, built before the clock starts so that the timed runs
measure ingestion, not the synthetic provider. The backfill ingests everything but the last
session; the incremental run then ingests that one session (the daily job). The incremental
run LISTs the raw prefix once and appends one small delta object per symbol (no GET: the
overlap day is checked against the digest in the object name). Floor of the ratio: a backfill
PUTs about years + 1 objects per symbol, the daily run one, so where per-object cost dominates
(moto_server sharing the CPU with the client) the ratio cannot fall much below 1 / (years + 1).

    python benchmarks/ingest.py                       # small default, ~1 min here
    python benchmarks/ingest.py --symbols 500 --years 20   # the goal: incremental <= 5%

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import date

import boto3
import pandas as pd

from stockml.ingest import ingest
from stockml.local import start_moto_server
from stockml.providers.base import Provider, RetryPolicy
from stockml.providers.sample import SampleProvider
from stockml.storage import Store


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
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")

    msft = SampleProvider().fetch_bars("MSFT", date(1986, 1, 1), date(2017, 12, 31))
    last = msft["date"].iloc[-1]
    base = msft[msft["date"] > last - pd.DateOffset(years=args.years)].reset_index(drop=True)
    previous = base["date"].iloc[-2]
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

        provider = ScaledCopies(base, last_day=previous)
        provider.scale(symbols)
        t0 = time.perf_counter()
        backfill = ingest(
            store,
            provider,
            symbols,
            start=base["date"].iloc[0],
            now=(previous + evening).tz_localize("UTC"),
            max_workers=args.workers,
        )
        backfill_s = time.perf_counter() - t0

        provider.last_day = last
        t0 = time.perf_counter()
        incremental = ingest(
            store,
            provider,
            symbols,
            start=base["date"].iloc[0],
            now=(last + evening).tz_localize("UTC"),
            max_workers=args.workers,
        )
        incremental_s = time.perf_counter() - t0

        summary = store.summary()
        rows = int(summary["rows"].sum())
        assert not backfill.failed and not incremental.failed, "a symbol failed"
        assert incremental.totals()["written"] == len(symbols), incremental.totals()
        assert rows == len(symbols) * len(base), (rows, len(symbols) * len(base))
    finally:
        server.stop()

    ratio = incremental_s / backfill_s
    print(
        f"universe: {len(symbols)} symbols x {args.years} years = {rows} rows "
        f"({len(base)} sessions each, {int(summary['partitions'].sum())} partitions)"
    )
    print(f"backfill:    {backfill_s:8.2f} s  ({backfill.totals()['written']} rows written)")
    print(f"incremental: {incremental_s:8.2f} s  (1 new session x {len(symbols)} symbols)")
    print(f"incremental / backfill = {ratio:.2%}  (goal at 500 x 20: <= 5%)")
    print(
        json.dumps(
            {
                "symbols": len(symbols),
                "years": args.years,
                "rows": rows,
                "workers": args.workers,
                "backfill_s": round(backfill_s, 3),
                "incremental_s": round(incremental_s, 3),
                "incremental_to_backfill_ratio": round(ratio, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
