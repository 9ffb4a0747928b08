"""Incremental ingestion on moto's in-process S3.

``ScriptedProvider`` stands in for the outside world (a market-data vendor): it serves bars
from an in-memory history that a test can change between runs (new day, split, outage).
"""

from __future__ import annotations

import json
import shutil
from datetime import date

import pandas as pd
import pytest

from stockml.calendar import sessions
from stockml.errors import IngestError, ProviderError, UnknownSymbolError
from stockml.ingest import ingest, plan_batches
from stockml.providers.base import Provider, RetryPolicy
from stockml.settings import StoreSettings
from stockml.storage import Store
from utils.bars import make_bars

# Monday 2024-07-08, 18:00 New York: after the close, so the 8th is the last completed session
MONDAY_EVENING = pd.Timestamp("2024-07-08 22:00", tz="UTC")


class ScriptedProvider(Provider):
    """A vendor whose history and failures the test controls; records every call."""

    name = "scripted"

    def __init__(self, history: dict[str, pd.DataFrame]) -> None:
        super().__init__(retry=RetryPolicy(max_retries=0))
        self.history = history
        self.failing: set[str] = set()
        self.calls: list[tuple[str, date, date]] = []

    def _fetch_bars(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        self.calls.append((symbol, start, end))
        if symbol in self.failing:
            raise ProviderError(f"{symbol}: HTTP 500 from the vendor")
        if symbol not in self.history:
            raise UnknownSymbolError(symbol)
        return self.history[symbol]


@pytest.fixture
def store(mock_store_settings: StoreSettings) -> Store:
    return Store.from_settings(mock_store_settings)


def test_first_run_backfills_and_rerun_same_evening_calls_nobody(store: Store) -> None:
    # GIVEN a vendor with two symbols up to Monday 2024-07-08
    vendor = ScriptedProvider(
        {
            s: make_bars(s, "2023-01-01", "2024-07-08", base=b)
            for s, b in [("MSFT", 300.0), ("^GSPC", 4000.0)]
        }
    )

    # WHEN ingestion runs twice on Monday evening
    first = ingest(store, vendor, ["MSFT", "^GSPC"], start="2023-01-01", now=MONDAY_EVENING)
    calls_after_first = len(vendor.calls)
    second = ingest(store, vendor, ["MSFT", "^GSPC"], start="2023-01-01", now=MONDAY_EVENING)

    # THEN the first run stored everything, the second did not even ask the vendor
    n = len(sessions("2023-01-01", "2024-07-08"))
    assert [s.written for s in first.symbols] == [n, n]
    assert all(s.skipped for s in second.symbols) and len(vendor.calls) == calls_after_first == 2
    stored = store.read_bars()
    assert len(stored) == 2 * n and not stored.duplicated(["symbol", "date"]).any()


@pytest.mark.parametrize(
    ("now", "why"),
    [
        (pd.Timestamp("2024-07-06 15:00", tz="UTC"), "Saturday"),
        (pd.Timestamp("2024-07-04 23:00", tz="UTC"), "Independence Day"),
        (pd.Timestamp("2024-07-05 15:00", tz="UTC"), "Friday before the close"),
    ],
)
def test_no_provider_call_when_no_session_closed(store: Store, now: pd.Timestamp, why: str) -> None:
    # GIVEN bars stored up to the last session that had closed at ``now``
    last_closed = {"Saturday": "2024-07-05", "Independence Day": "2024-07-03"}.get(
        why, "2024-07-03"
    )
    vendor = ScriptedProvider({"MSFT": make_bars("MSFT", "2024-06-01", last_closed)})
    store.upsert_bars(vendor.history["MSFT"])

    # WHEN ingestion runs at ``now``
    report = ingest(store, vendor, ["MSFT"], start="2024-06-01", now=now)

    # THEN the vendor is not called
    assert report.symbols[0].skipped, why
    assert vendor.calls == []


def test_a_new_session_fetches_from_the_overlap_day_only(store: Store) -> None:
    # GIVEN bars stored up to Friday 2024-07-05 and a vendor that now has Monday too
    history = make_bars("MSFT", "2024-01-01", "2024-07-08")
    store.upsert_bars(history[history["date"] <= "2024-07-05"])
    keys_before = set(store.list_keys("raw/"))
    vendor = ScriptedProvider({"MSFT": history})

    # WHEN ingestion runs Monday evening
    report = ingest(store, vendor, ["MSFT"], start="2024-01-01", now=MONDAY_EVENING)

    # THEN the vendor is asked for Friday..Monday, one row is written, one partition rewritten
    assert vendor.calls == [("MSFT", date(2024, 7, 5), date(2024, 7, 8))]
    assert report.symbols[0].written == 1 and not report.symbols[0].readjusted
    stored = store.read_bars(["MSFT"])
    pd.testing.assert_frame_equal(stored, history.reset_index(drop=True), check_dtype=False)
    assert len(set(store.list_keys("raw/")) - keys_before) == 1


def test_a_daily_run_lists_the_newest_year_and_writes_one_object_for_all_symbols(
    store: Store, mock_store_settings: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN 30 symbols stored over 2022..Friday 2024-07-05 (three year folders)
    symbols = [f"S{i:02d}" for i in range(30)]
    history = {
        s: make_bars(s, "2022-01-03", "2024-07-08", base=10.0 + i) for i, s in enumerate(symbols)
    }
    store.upsert_bars(pd.concat(h[h["date"] <= "2024-07-05"] for h in history.values()))
    keys_before = set(store.list_keys("raw/"))

    # WHEN Monday's run comes, in a new process (a fresh Store) that records its LISTs
    daily = Store.from_settings(mock_store_settings)
    listed: list[str] = []
    real_list = daily.list_keys

    def recording(prefix: str) -> list[str]:
        listed.append(prefix)
        return real_list(prefix)

    monkeypatch.setattr(daily, "list_keys", recording)
    report = ingest(daily, ScriptedProvider(history), symbols, "2022-01-01", now=MONDAY_EVENING)
    monkeypatch.undo()

    # THEN it listed this year's folder (and the delta folder), never 2022 or 2023
    assert not report.failed and report.totals()["written"] == 30
    assert not any("year=2022" in p or "year=2023" in p for p in listed), listed
    assert "raw/year=2024/" in listed
    # AND the 30 new rows went into ONE object
    new_keys = set(store.list_keys("raw/")) - keys_before
    assert len(new_keys) == 1 and next(iter(new_keys)).startswith("raw/_delta/")
    back = store.read_bars()
    assert len(back) == sum(len(h) for h in history.values())
    assert not back.duplicated(["symbol", "date"]).any()


def test_one_failing_symbol_does_not_lose_the_others_and_the_run_fails_loudly(store: Store) -> None:
    # GIVEN a vendor that fails for AAPL only
    vendor = ScriptedProvider(
        {s: make_bars(s, "2024-05-01", "2024-07-08") for s in ["MSFT", "AAPL", "IBM"]}
    )
    vendor.failing.add("AAPL")

    # WHEN ingestion runs
    report = ingest(store, vendor, ["MSFT", "AAPL", "IBM"], start="2024-05-01", now=MONDAY_EVENING)

    # THEN the other symbols are stored, AAPL's error is reported, and raising names it
    assert set(store.read_bars()["symbol"]) == {"MSFT", "IBM"}
    assert [s.symbol for s in report.failed] == ["AAPL"]
    assert "HTTP 500" in (report.failed[0].error or "")
    with pytest.raises(IngestError, match="AAPL"):
        report.raise_for_errors()

    # AND once the vendor recovers, a re-run fills AAPL and leaves the others untouched
    vendor.failing.clear()
    vendor.calls.clear()
    again = ingest(store, vendor, ["MSFT", "AAPL", "IBM"], start="2024-05-01", now=MONDAY_EVENING)
    assert [c[0] for c in vendor.calls] == ["AAPL"]
    assert not again.failed and len(store.read_bars(["AAPL"])) == len(vendor.history["AAPL"])


def test_a_split_in_new_data_re_adjusts_the_stored_history(store: Store) -> None:
    # GIVEN a stored history up to Friday
    before = make_bars("NVDA", "2024-05-01", "2024-07-05", base=1000.0)
    store.upsert_bars(before)
    # AND a vendor that, after a 10:1 split on Monday, serves the whole history split-adjusted
    after = make_bars("NVDA", "2024-05-01", "2024-07-08", base=1000.0)
    for column in ["open", "high", "low", "close", "adj_close"]:
        after[column] = after[column] / 10
    vendor = ScriptedProvider({"NVDA": after})

    # WHEN ingestion runs Monday evening
    report = ingest(store, vendor, ["NVDA"], start="2024-05-01", now=MONDAY_EVENING)

    # THEN the mismatch on the overlap day is noticed and the full history is replaced
    assert report.symbols[0].readjusted
    assert [(c[1], c[2]) for c in vendor.calls] == [
        (date(2024, 7, 5), date(2024, 7, 8)),
        (date(2024, 5, 1), date(2024, 7, 8)),
    ]
    stored = store.read_bars(["NVDA"])
    pd.testing.assert_frame_equal(stored, after.reset_index(drop=True), check_dtype=False)
    returns = stored["close"].pct_change().dropna()
    assert returns.abs().max() < 0.05  # no fake -90% day where old and new bases meet


def test_a_dividend_changing_only_adj_close_re_adjusts(store: Store) -> None:
    # GIVEN a stored history, and a vendor whose adj_close was scaled down by a dividend
    before = make_bars("KO", "2024-05-01", "2024-07-05", base=60.0)
    store.upsert_bars(before)
    after = make_bars("KO", "2024-05-01", "2024-07-08", base=60.0)
    after["adj_close"] = after["adj_close"] * 0.992
    vendor = ScriptedProvider({"KO": after})

    # WHEN ingestion runs
    report = ingest(store, vendor, ["KO"], start="2024-05-01", now=MONDAY_EVENING)

    # THEN every stored adj_close is on the new basis, closes unchanged
    assert report.symbols[0].readjusted
    stored = store.read_bars(["KO"])
    assert (stored["adj_close"] / stored["close"]).round(6).nunique() == 1
    pd.testing.assert_frame_equal(stored, after.reset_index(drop=True), check_dtype=False)


def test_a_shorter_re_fetch_keeps_the_older_rows_rescaled(store: Store) -> None:
    # GIVEN 105 stored sessions up to Friday
    before = make_bars("NVDA", "2024-02-05", "2024-07-05", base=1000.0)
    assert len(before) == 105
    store.upsert_bars(before)
    # AND, after a 10:1 split on Monday, a vendor that serves only its last 7 sessions
    after = make_bars("NVDA", "2024-02-05", "2024-07-08", base=1000.0)
    after[["open", "high", "low", "close", "adj_close"]] /= 10
    after["volume"] *= 10
    vendor = ScriptedProvider({"NVDA": after.tail(7).reset_index(drop=True)})

    # WHEN ingestion runs Monday evening
    report = ingest(store, vendor, ["NVDA"], start="2024-02-05", now=MONDAY_EVENING)

    # THEN no stored day is lost: the 6 days the vendor sent again are its rows, the 99 older
    # ones are kept and rescaled by the split, and the new day is added
    stored = store.read_bars(["NVDA"])
    assert len(stored) == 106 and not stored.duplicated(["date"]).any()
    cols = ["date", "open", "high", "low", "close", "adj_close", "volume"]
    pd.testing.assert_frame_equal(stored[cols], after[cols], check_dtype=False)
    assert stored["close"].pct_change().dropna().abs().max() < 0.05  # continuous
    # AND the run reports it, and the adjustment is recorded in the store
    symbol = report.symbols[0]
    assert symbol.error is None and symbol.readjusted
    assert symbol.adjustment is not None
    assert (symbol.adjustment["kept"], symbol.adjustment["replaced"]) == (99, 6)
    assert symbol.adjustment["price_factor"] == pytest.approx(0.1)
    records = store.list_keys("raw/_adjustments/symbol=NVDA/")
    assert len(records) == 1
    assert json.loads(store.get_bytes(records[0]))["kept"] == 99


def test_plan_batches_covers_the_universe_once() -> None:
    # GIVEN 7 symbols with a repeat WHEN split in batches of 3
    batches = plan_batches(["A", "B", "C", "D", "A", "E", "F", "G"], 3)
    # THEN every symbol appears once, in order, in batches of at most 3
    assert batches == [["A", "B", "C"], ["D", "E", "F"], ["G"]]


def test_sample_provider_ingests_the_embedded_data(store: Store) -> None:
    # GIVEN the real embedded data (MSFT from pmdarima, ^VIX close-only from arch)
    from stockml.providers.sample import SampleProvider

    provider = SampleProvider()

    # WHEN two symbols are ingested for 2015-2016, twice
    report = ingest(store, provider, ["MSFT", "^VIX"], start="2015-01-01", end="2016-12-31")
    again = ingest(store, provider, ["MSFT", "^VIX"], start="2015-01-01", end="2016-12-31")

    # THEN every vendor row is stored once, none quarantined, and the re-run is a no-op
    expected = {
        s: len(provider.fetch_bars(s, date(2015, 1, 1), date(2016, 12, 31)))
        for s in ["MSFT", "^VIX"]
    }
    assert {s.symbol: s.written for s in report.symbols} == expected
    assert all(s.quarantined == 0 for s in report.symbols)
    assert all(s.skipped and s.written == 0 for s in again.symbols)
    stored = store.read_bars()
    assert stored.groupby("symbol").size().to_dict() == expected
    vix = stored[stored["symbol"] == "^VIX"]
    assert (vix["open"] == vix["close"]).all() and vix["volume"].isna().all()


@pytest.mark.shared_data
def test_real_price_files_quarantine_bad_rows_and_keep_big_moves(
    store: Store,
    shared_data,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    # GIVEN real Yahoo-style files (copied to a temp folder under the csv provider's names)
    from stockml.providers.csv import CsvProvider

    daily = shared_data / "prices" / "daily"
    shutil.copy(
        daily / "mplfinance" / "yahoofinance-SPY-20080101-20180101.csv", tmp_path / "SPY.csv"
    )
    shutil.copy(daily / "backtrader" / "yhoo-1996-2015.txt", tmp_path / "YHOO.csv")

    # WHEN both are ingested through the csv provider
    report = ingest(
        store, CsvProvider(tmp_path), ["SPY", "YHOO"], start="1990-01-01", end="2018-01-01"
    )

    # THEN SPY's rows with a low above min(open, close) are quarantined with that reason
    by_symbol = {s.symbol: s for s in report.symbols}
    quarantined = store.read_quarantine()
    spy_bad = quarantined[quarantined["symbol"] == "SPY"]
    assert by_symbol["SPY"].quarantined == len(spy_bad) == 2
    assert spy_bad["reason"].str.contains("low above min").all()
    # AND YHOO's real +48% day (2008-02-01, Microsoft's bid) is stored, not rejected
    yhoo = store.read_bars(["YHOO"]).set_index("date")["adj_close"]
    jump = yhoo.loc["2008-02-01"] / yhoo.loc["2008-01-31"] - 1
    assert jump > 0.4
    assert by_symbol["YHOO"].error is None and by_symbol["YHOO"].written == len(yhoo)
