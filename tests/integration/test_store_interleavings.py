"""Concurrent writers of one table, in many request orders we choose, some killed midway.

Writers (threads, each with its own Store and S3 client) race on the same partitions: the
same daily append twice, an append starting a day later, a correction of an old day (a base
rewrite), a compaction, an atomic re-adjustment of several days. A seeded scheduler
(tests/utils/interleave.py) lets one S3 request through at a time, against the real
moto_server, and may kill a writer before any of its requests.

The oracle is independent of the store's code: from which writers finished (their upsert
returned) and which were killed, it says which rows must exist and with which values. Between
requests, a fresh reader checks the table: every row once, nothing a finished writer wrote
missing, a killed writer's atomic write seen whole or not at all.

``STOCKML_INTERLEAVINGS=500`` explores more orders than the default; ``STOCKML_SHOW_STEPS=1``
prints each order's requests (run one seed with ``-s``).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import boto3
import pandas as pd
import pytest

from stockml import storage
from stockml.local import LocalServer
from stockml.storage import Store
from utils.bars import make_bars
from utils.interleave import Outcome, Scheduler, fresh, gated

pytestmark = pytest.mark.integration

SCHEDULES = int(os.environ.get("STOCKML_INTERLEAVINGS", "24"))
SYMBOLS = ("AAA", "BBB")
CORRECTED = ("AAA", 3)  # (symbol, index of the day) a correction rewrites
READJUSTED = ("BBB", range(5, 11))  # days an atomic re-adjustment doubles


@pytest.fixture(scope="module")
def template(moto_server: LocalServer) -> Store:
    """One Store (and S3 client) that each test copies onto its own table."""
    name = "interleavings"
    boto3.client("s3", endpoint_url=moto_server.url, region_name="us-east-1").create_bucket(
        Bucket=name
    )
    return Store(name, endpoint_url=moto_server.url, max_workers=4)


def _history() -> dict[str, pd.DataFrame]:
    return {
        s: make_bars(s, "2024-01-02", "2024-02-29", base=b)
        for s, b in zip(SYMBOLS, (10.0, 50.0), strict=True)
    }


def _writers(hist: dict[str, pd.DataFrame], n: int) -> dict[str, Callable[[Store], Any]]:
    """The writers; the initial state stores days < n (``n - 1`` = the last stored day)."""
    days = list(hist["AAA"]["date"])

    def rows(lo: int, hi: int) -> pd.DataFrame:
        return pd.concat(h.iloc[lo : hi + 1] for h in hist.values())

    def append(lo: int, hi: int) -> Callable[[Store], Any]:
        # an incremental fetch: from the last day it saw stored (the overlap) to ``hi``
        return lambda st: st.upsert_bars(
            rows(lo, hi), expect_unchanged={(s, days[lo]) for s in SYMBOLS}
        )

    def correct(st: Store) -> Any:
        symbol, i = CORRECTED
        fix = hist[symbol].iloc[[i]].copy()
        fix[["close", "high"]] += 1000.0
        return st.upsert_bars(fix)

    def readjust(st: Store) -> Any:
        symbol, span = READJUSTED
        adjusted = hist[symbol].iloc[list(span)].copy()
        adjusted[["open", "high", "low", "close", "adj_close"]] *= 2
        return st.upsert_bars(adjusted, atomic=True)

    return {
        "append": append(n - 1, n),
        "append-again": append(n - 1, n),
        "append-later": append(n + 1, n + 2),
        "correct": correct,
        "compact": lambda st: st.compact(symbols=list(SYMBOLS)),
        "readjust": readjust,
    }


class Oracle:
    """Which rows must (and may) be stored, given what each writer did so far."""

    def __init__(self, hist: dict[str, pd.DataFrame], n: int) -> None:
        self.hist = hist
        self.n = n
        self.days = list(hist["AAA"]["date"])

    def check(self, table: pd.DataFrame, outcomes: dict[str, Outcome], final: bool) -> None:
        assert not table.duplicated(["symbol", "date"]).any(), "a row is stored twice"
        done = {k for k, o in outcomes.items() if o.ended is not None and not o.crashed}
        maybe = {k for k, o in outcomes.items() if o.crashed or o.ended is None}
        if final:
            assert not maybe - {k for k, o in outcomes.items() if o.crashed}
        got = table.set_index(["symbol", "date"])
        for symbol, h in self.hist.items():
            required = set(range(self.n))
            allowed = set(range(self.n))
            for name, span in (
                ("append", range(self.n, self.n + 1)),
                ("append-again", range(self.n, self.n + 1)),
                ("append-later", range(self.n + 1, self.n + 3)),
            ):
                if name in done:
                    required |= set(span)
                if name in done | maybe:
                    allowed |= set(span)
            stored = (
                {self.days.index(d) for d in got.loc[symbol].index}
                if symbol in got.index
                else set()
            )
            assert required <= stored, f"{symbol}: days lost: {sorted(required - stored)}"
            assert stored <= allowed, f"{symbol}: days never written: {sorted(stored - allowed)}"
            close = got.loc[symbol, "close"]
            for i in sorted(stored):
                plain = h["close"].iloc[i]
                options = {plain}
                if (symbol, i) == CORRECTED and ({"correct"} & (done | maybe)):
                    options = {plain + 1000.0} if "correct" in done else {plain, plain + 1000.0}
                if symbol == READJUSTED[0] and i in READJUSTED[1] and {"readjust"} & (done | maybe):
                    options = {2 * plain} if "readjust" in done else {plain, 2 * plain}
                value = close.loc[self.days[i]]
                assert value in options, f"{symbol} day {i}: {value} not in {options}"
            # an atomic write is seen whole or not at all
            if symbol == READJUSTED[0]:
                doubled = {close.loc[self.days[i]] == 2 * h["close"].iloc[i] for i in READJUSTED[1]}
                assert len(doubled) == 1, "the atomic re-adjustment is seen in part"


@pytest.mark.parametrize("seed", range(SCHEDULES))
def test_concurrent_writers_in_any_order_lose_and_duplicate_nothing(
    seed: int, template: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # compaction after 3 deltas (instead of 8): appends race with compactions more often
    monkeypatch.setattr(storage, "MAX_DELTAS", 3)
    monkeypatch.setattr(storage, "_RETRY_PAUSE_S", 0.0)
    rng = random.Random(seed)
    prefix = f"raw{seed}"

    def store() -> Store:
        return fresh(template, prefix)

    # GIVEN two symbols stored as a base and 1-2 shared deltas (or 3: compaction is due)
    hist = _history()
    base_days = 20
    n = base_days + rng.choice([1, 2, 3])
    setup = store()
    setup.upsert_bars(pd.concat(h.iloc[:base_days] for h in hist.values()))
    for i in range(base_days, n):
        setup.upsert_bars(
            pd.concat(h.iloc[i - 1 : i + 1] for h in hist.values()),
            expect_unchanged={(s, hist[s]["date"].iloc[i - 1]) for s in SYMBOLS},
        )
    oracle = Oracle(hist, n)
    everyone = _writers(hist, n)
    chosen = rng.sample(sorted(everyone), k=rng.choice([2, 3, 4]))
    writers = {name: everyone[name] for name in chosen}
    # AND a reader reading while they write (files may vanish between its LIST and its GETs)
    writers["reader"] = lambda st: st.read_bars()

    # WHEN they run concurrently, one S3 request at a time in a seeded order, maybe one killed
    outcomes: dict[str, Outcome] = {}
    reads = {"n": 0}

    def between(step: int) -> None:
        if step % 3 == 0:
            reads["n"] += 1
            oracle.check(store().read_bars(), outcomes, final=False)

    scheduler = Scheduler(seed=seed, crash_probability=0.05, between=between)
    stores = {name: gated(store(), scheduler, name) for name in writers}
    try:
        scheduler.run(writers, stores, outcomes)
    finally:
        if os.environ.get("STOCKML_SHOW_STEPS"):
            print("\n".join(f"{a:14} {b}" for a, b in scheduler.steps))
            print({k: (o.started, o.ended, o.crashed) for k, o in outcomes.items()})

    # THEN no writer failed, and a fresh reader sees exactly the rows the oracle allows
    errors = {k: o.error for k, o in outcomes.items() if o.error is not None}
    assert not errors, f"{errors} (requests: {scheduler.steps})"
    reader = outcomes.pop("reader")
    if not reader.crashed:  # what it read holds all that was written before it started
        assert reader.started is not None
        before = {
            k: o if o.ended is not None and o.ended <= reader.started else Outcome(k)
            for k, o in outcomes.items()
        }
        oracle.check(reader.result, before, final=False)
    oracle.check(store().read_bars(), outcomes, final=True)
    summary = store().summary().set_index("symbol")
    back = store().read_bars()
    assert (summary["rows"] == back.groupby("symbol").size()).all()
    assert reads["n"] > 0


def test_a_writer_that_conflicts_writes_its_rows_again_before_a_merge_can_hide_them(
    template: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "_RETRY_PAUSE_S", 0.0)
    prefix = "raw-scripted"

    def store() -> Store:
        return fresh(template, prefix)

    # GIVEN a base and one delta (a compaction would merge them)
    hist = _history()
    n = 21
    setup = store()
    setup.upsert_bars(pd.concat(h.iloc[:20] for h in hist.values()))
    setup.upsert_bars(
        pd.concat(h.iloc[19:21] for h in hist.values()),
        expect_unchanged={(s, hist[s]["date"].iloc[19]) for s in SYMBOLS},
    )
    everyone = _writers(hist, n)
    writers = {k: everyone[k] for k in ("append", "append-later", "compact")}

    # WHEN "append" picks its delta's version, then "append-later" writes a delta with a newer
    # one, the compaction lists that (but not "append"'s) and reads, "append" PUTs and finds
    # the newer delta (a conflict) and goes round again, and only then the compaction PUTs a
    # base that hides "append"'s delta without holding its rows
    outcomes: dict[str, Outcome] = {}
    scheduler = Scheduler(
        seed=0,
        script=[
            ("append", "PUT"),
            ("append-later", None),
            ("compact", "PUT"),
            ("append", "PUT"),  # its PUT, the LIST that finds the conflict, the next round
            ("compact", None),
            ("append", None),
        ],
    )
    scheduler.run(writers, {k: gated(store(), scheduler, k) for k in writers}, outcomes)

    # THEN every writer finished and "append"'s days are stored: its second round wrote them
    # again (a round that found them "present" only in its own hidden delta would lose them)
    assert all(o.error is None and not o.crashed for o in outcomes.values()), outcomes
    assert outcomes["append"].result.attempts >= 2
    Oracle(hist, n).check(store().read_bars(), outcomes, final=True)


def test_a_merge_whose_listings_straddle_a_committed_write_does_not_hide_it(
    template: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "MAX_DELTAS", 2)
    monkeypatch.setattr(storage, "_RETRY_PAUSE_S", 0.0)
    prefix = "raw-straddle"

    def store() -> Store:
        return fresh(template, prefix)

    # GIVEN a base and one delta
    hist = _history()
    n = 21
    setup = store()
    setup.upsert_bars(pd.concat(h.iloc[:20] for h in hist.values()))
    setup.upsert_bars(
        pd.concat(h.iloc[19:21] for h in hist.values()),
        expect_unchanged={(s, hist[s]["date"].iloc[19]) for s in SYMBOLS},
    )
    everyone = _writers(hist, n)
    writers = {k: everyone[k] for k in ("compact", "correct", "append")}

    # WHEN the compaction lists the shared deltas; the correction lists everything; the
    # append writes its delta and completes; the correction writes a base newer than that
    # delta (not holding it: it listed before it) and completes; and only then does the
    # compaction list the year folders: what it listed holds that newer base but not the
    # older delta, which a merge reading only what it listed would hide without its rows
    outcomes: dict[str, Outcome] = {}
    scheduler = Scheduler(
        seed=0,
        script=[
            ("compact", f"LIST {prefix}/_delta/"),  # its choice of partitions to compact
            ("compact", f"LIST {prefix}/"),  # the shared deltas of its merge's listing
            ("correct", f"GET {prefix}/year="),
            ("append", None),
            ("correct", None),
            ("compact", None),
        ],
    )
    scheduler.run(writers, {k: gated(store(), scheduler, k) for k in writers}, outcomes)

    # THEN the appended day, whose write completed before the compaction merged, is there
    assert all(o.error is None and not o.crashed for o in outcomes.values()), outcomes
    Oracle(hist, n).check(store().read_bars(), outcomes, final=True)
