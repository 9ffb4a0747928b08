"""Feature throughput: rows/s of build_features (full feature set) on one core.

Data: the pmdarima MSFT history (7983 bars) replicated as ``--symbols`` symbols, the arch
^GSPC/^IXIC/^VIX series as market context, and ``--headlines`` synthetic headlines spread over
the symbols. The process is pinned to one core and numpy's thread pools to one thread.
The last line printed is one JSON object: ``rows_per_s`` = input bar rows per wall-clock second,
``rows_per_cpu_s`` = per second of the process's CPU time (what one core achieves when the
machine is shared and the wall clock includes waiting for the core).
"""

from __future__ import annotations

import os

# one core: pin BLAS/OpenMP pools before numpy loads
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from stockml.features import FeatureConfig, build_features, feature_columns  # noqa: E402
from stockml.schemas import BAR_COLUMNS  # noqa: E402


def sample_bars(symbols: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from arch.data import nasdaq, sp500, vix
    from pmdarima.datasets import load_msft

    raw = load_msft()
    one = pd.DataFrame(
        {
            "date": pd.to_datetime(raw["Date"]),
            "open": raw["Open"],
            "high": raw["High"],
            "low": raw["Low"],
            "close": raw["Close"],
            "adj_close": raw["Close"],
            "volume": raw["Volume"].astype("float64"),
            "source": "pmdarima",
        }
    )
    bars = pd.concat([one.assign(symbol=f"S{i:03d}") for i in range(symbols)], ignore_index=True)[
        BAR_COLUMNS
    ]
    market = []
    for symbol, data in (("^GSPC", sp500.load()), ("^IXIC", nasdaq.load())):
        frame = data.reset_index().rename(columns={"Date": "date", "Close": "close"})
        market.append(frame[["date", "close"]].assign(symbol=symbol))
    v = vix.load()["vix"].dropna()
    market.append(pd.DataFrame({"date": v.index, "close": v.to_numpy(), "symbol": "^VIX"}))
    return bars, pd.concat(market, ignore_index=True)


def sample_news(bars: pd.DataFrame, n: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    titles = [
        "Shares plunged after the profit warning",
        "Net sales increased by 12 %",
        "The company will publish its results on Tuesday",
        "Operating loss narrowed",
        "Analysts downgraded the stock",
    ]
    pick = rng.integers(0, len(bars), n)
    stamps = pd.to_datetime(bars["date"].to_numpy()[pick]) + pd.to_timedelta(
        rng.integers(0, 24 * 60, n), unit="m"
    )
    return pd.DataFrame(
        {
            "symbol": bars["symbol"].to_numpy()[pick],
            "published_at": stamps.tz_localize("UTC"),
            # numbered: every headline is distinct, so the scorer's de-duplication gains nothing
            "title": [
                f"{titles[t]} (item {i})" for i, t in enumerate(rng.integers(0, len(titles), n))
            ],
            "summary": "",
            "url": [f"https://example.test/{i}" for i in range(n)],
            "source": "bench",
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=30)
    parser.add_argument("--headlines", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    config = FeatureConfig.from_yaml()
    bars, market = sample_bars(args.symbols)
    news = sample_news(bars, args.headlines)
    logging.getLogger("stockml").setLevel(logging.ERROR)  # price-only has no market, on purpose
    # warm the caches (calendar, VADER) outside the timing
    build_features(bars[bars["symbol"] == "S000"], market, news, config)
    # wall time counts the waits for a shared core; CPU time is what one core spends on it
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for name, (m, n) in {"price_only": (None, None), "full": (market, news)}.items():
        best, best_cpu = float("inf"), float("inf")
        for _ in range(args.repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            out = build_features(bars, m, n, config)
            best = min(best, time.perf_counter() - start)
            best_cpu = min(best_cpu, time.process_time() - start_cpu)
        timings[name], cpu[name] = best, best_cpu
        print(
            f"{name:>10}: {len(bars)} bars -> {len(out)} rows x {len(feature_columns(config))} "
            f"features in {best:.3f} s wall, {best_cpu:.3f} s CPU = {len(bars) / best:,.0f} rows/s "
            f"(wall), {len(bars) / best_cpu:,.0f} rows/s (CPU)"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"load average (1 min) during the run: {load}")
    print(
        json.dumps(
            {
                "rows_per_s": round(len(bars) / timings["full"]),
                "rows_per_cpu_s": round(len(bars) / cpu["full"]),
                "rows_per_s_price_only": round(len(bars) / timings["price_only"]),
                "rows": len(bars),
                "symbols": args.symbols,
                "headlines": args.headlines,
                "seconds_full": round(timings["full"], 4),
                "features": len(feature_columns(config)),
                "cores": 1,
                "load_avg_1m": load,
            }
        )
    )


if __name__ == "__main__":
    main()
