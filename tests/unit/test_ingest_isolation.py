"""Ingestion keeps failures per symbol and bad rows per row (on moto's in-process S3)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stockml.errors import IngestError, StoreError, UnknownSymbolError
from stockml.ingest import ingest
from stockml.providers.base import Provider, RetryPolicy
from stockml.providers.csv import CsvProvider
from stockml.settings import StoreSettings
from stockml.storage import Store, UpsertReport
from utils.bars import make_bars

# Monday 2024-07-08, 18:00 New York: the 8th is the last completed session
MONDAY_EVENING = pd.Timestamp("2024-07-08 22:00", tz="UTC")


class VendorStub(Provider):
    """A vendor serving in-memory histories; ``broken`` symbols raise an unexpected error."""

    name = "stub"

    def __init__(self, history: dict[str, pd.DataFrame]) -> None:
        super().__init__(retry=RetryPolicy(max_retries=0))
        self.history = history
        self.broken: set[str] = set()
        self.calls: list[str] = []

    def _fetch_bars(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        self.calls.append(symbol)
        if symbol in self.broken:
            raise KeyError("'chart'")  # a payload the client did not expect: not a StockmlError
        if symbol not in self.history:
            raise UnknownSymbolError(symbol)
        return self.history[symbol]


@pytest.fixture
def store(mock_store_settings: StoreSettings) -> Store:
    return Store.from_settings(mock_store_settings)


def _write_csv(folder: Path, symbol: str, rows: list[tuple[str, str]]) -> None:
    """``<symbol>.csv`` with one row per (date, close): open 10, high 100, low 1."""
    lines = ["Date,Open,High,Low,Close,Adj Close,Volume"]
    lines += [f"{day},10,100,1,{close},{close},1000" for day, close in rows]
    (folder / f"{symbol}.csv").write_text("\n".join(lines) + "\n")


def test_bad_rows_in_one_csv_are_quarantined_with_their_text_and_every_symbol_is_stored(
    store: Store, tmp_path: Path
) -> None:
    # GIVEN three CSV files; BBB's holds one bad row of each kind beside four good ones
    good = [(f"2024-07-0{d}", f"1{d}.0") for d in (1, 2, 3, 5, 8)]
    _write_csv(tmp_path, "AAA", good)
    _write_csv(tmp_path, "CCC", good)
    _write_csv(
        tmp_path,
        "BBB",
        [
            ("2024-07-01", "11.0"),
            ("2024-07-02", "12.0"),
            ("2024-07-32", "99.0"),  # unparseable date
            ("2024-07-03", "abc"),  # non-numeric close
            ("2024-07-04", "14.0"),  # Independence Day: no session
            ("2024-07-05", "inf"),  # infinite price
            ("2024-07-02", "55.0"),  # a second copy of the 2nd
            ("2024-07-08", "18.0"),
            ("2024-07-09", "-3.0"),  # non-positive price (and after the last session)
        ],
    )

    # WHEN the three are ingested in one run
    report = ingest(
        store, CsvProvider(tmp_path), ["AAA", "BBB", "CCC"], start="2024-07-01", now=MONDAY_EVENING
    )

    # THEN no symbol failed, and every good row of every symbol is stored
    assert report.failed == []
    stored = store.read_bars()
    days = stored.groupby("symbol")["date"].apply(lambda d: d.dt.day.tolist()).to_dict()
    assert days == {"AAA": [1, 2, 3, 5, 8], "BBB": [1, 2, 8], "CCC": [1, 2, 3, 5, 8]}
    # AND the first copy of the 2nd is the one stored, and no stored price is infinite
    bbb = stored[stored["symbol"] == "BBB"].set_index("date")
    assert bbb.loc["2024-07-02", "close"] == 12.0
    assert np.isfinite(stored[["open", "high", "low", "close", "adj_close"]]).all().all()
    # AND each bad row is in quarantine with its reason and, where it had one, its text
    quarantined = store.read_quarantine()
    reasons = sorted(quarantined["reason"])
    assert reasons == [
        "duplicate (symbol, date)",
        "infinite price;high below max(open, close)",
        "non-numeric close 'abc';non-numeric adj_close 'abc'",
        "not an NYSE session (holiday)",
        "unparseable date '2024-07-32'",
    ]
    texts = [json.loads(t) for t in quarantined["unparsed"].dropna()]
    assert sorted(texts, key=str) == [{"close": "abc", "adj_close": "abc"}, {"date": "2024-07-32"}]
    assert {s.symbol: s.quarantined for s in report.symbols} == {"AAA": 0, "BBB": 5, "CCC": 0}


def test_an_unexpected_provider_error_stays_with_its_symbol(store: Store) -> None:
    # GIVEN a vendor whose client breaks on one symbol's payload
    vendor = VendorStub({s: make_bars(s, "2024-06-03", "2024-07-08") for s in ("AAA", "BBB")})
    vendor.broken.add("BBB")
    # WHEN both are ingested
    report = ingest(store, vendor, ["AAA", "BBB"], start="2024-06-03", now=MONDAY_EVENING)
    # THEN AAA is stored and BBB's failure is reported with its cause
    assert set(store.read_bars()["symbol"]) == {"AAA"}
    assert [(s.symbol, s.error) for s in report.failed] == [("BBB", "KeyError: \"'chart'\"")]
    with pytest.raises(IngestError, match="BBB"):
        report.raise_for_errors()


@pytest.mark.parametrize("bad", ["../OUTSIDE", "msft", "A/B", "ÄPFEL", "A" * 300])
def test_an_invalid_symbol_fails_alone_and_is_never_fetched_nor_stored(
    store: Store, bad: str
) -> None:
    # GIVEN a vendor that would answer for the invalid symbol too
    vendor = VendorStub({s: make_bars(s, "2024-06-03", "2024-07-08") for s in ("MSFT", bad)})
    # WHEN both are ingested
    report = ingest(store, vendor, ["MSFT", bad], start="2024-06-03", now=MONDAY_EVENING)
    # THEN only MSFT was fetched and stored; the invalid one failed, saying why
    assert vendor.calls == ["MSFT"]
    assert set(store.read_bars()["symbol"]) == {"MSFT"}
    assert [s.symbol for s in report.failed] == [bad]
    assert "invalid symbol" in (report.failed[0].error or "")


class StoreFailingFor(Store):
    """The real store, except that a write holding rows of ``symbol`` fails (an S3 error)."""

    symbol = "BBB"

    def upsert_bars(self, df: pd.DataFrame, *args: object, **kwargs: object) -> UpsertReport:
        if (df["symbol"] == self.symbol).any():
            raise StoreError(f"s3: PUT of {self.symbol}'s partition failed: SlowDown")
        return super().upsert_bars(df, *args, **kwargs)  # type: ignore[arg-type]


def test_a_store_write_that_fails_for_one_symbol_does_not_fail_the_others(
    mock_store_settings: StoreSettings,
) -> None:
    # GIVEN a store whose writes of BBB fail
    store = StoreFailingFor.from_settings(mock_store_settings)
    vendor = VendorStub(
        {s: make_bars(s, "2024-06-03", "2024-07-08") for s in ("AAA", "BBB", "CCC")}
    )
    # WHEN the three are ingested in one run (one joint write, which fails)
    report = ingest(store, vendor, ["AAA", "BBB", "CCC"], start="2024-06-03", now=MONDAY_EVENING)
    # THEN AAA and CCC are stored, exactly once each, and only BBB failed
    n = len(vendor.history["AAA"])
    stored = store.read_bars()
    assert stored.groupby("symbol").size().to_dict() == {"AAA": n, "CCC": n}
    assert [s.symbol for s in report.failed] == ["BBB"]
    assert "SlowDown" in (report.failed[0].error or "")
    assert {s.symbol: s.written for s in report.symbols} == {"AAA": n, "BBB": 0, "CCC": n}


def test_an_index_bar_on_a_holiday_is_stored_and_flagged_an_equitys_is_quarantined(
    store: Store,
) -> None:
    # GIVEN a vendor whose ^VIX and MSFT both carry a bar on 2024-07-04 (no NYSE session)
    def with_holiday(symbol: str) -> pd.DataFrame:
        bars = make_bars(symbol, "2024-07-01", "2024-07-08")
        holiday = bars.iloc[[2]].assign(date=pd.Timestamp("2024-07-04"))
        return pd.concat([bars, holiday]).sort_values("date").reset_index(drop=True)

    vendor = VendorStub({s: with_holiday(s) for s in ("^VIX", "MSFT")})
    # WHEN ingested
    report = ingest(store, vendor, ["^VIX", "MSFT"], start="2024-07-01", now=MONDAY_EVENING)
    # THEN the index keeps it (flagged in the report), the equity's goes to quarantine
    stored = store.read_bars().groupby("symbol")["date"].apply(lambda d: d.dt.day.tolist())
    assert stored.to_dict() == {"MSFT": [1, 2, 3, 5, 8], "^VIX": [1, 2, 3, 4, 5, 8]}
    by = {s.symbol: s for s in report.symbols}
    assert (by["^VIX"].flagged, by["^VIX"].quarantined) == (1, 0)
    assert (by["MSFT"].flagged, by["MSFT"].quarantined) == (0, 1)
    assert report.totals()["flagged"] == 1
