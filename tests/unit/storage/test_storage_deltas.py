"""Delta files of the store on moto's in-process S3: appends, compaction, crash safety."""

from __future__ import annotations

import pandas as pd
import pytest

from stockml.errors import StoreError
from stockml.settings import StoreSettings
from stockml.storage import MAX_DELTAS, Store
from utils.bars import make_bars

PARTITION = "raw/year=2024/symbol=MSFT/"
SHARED = "raw/_delta/"


@pytest.fixture
def store(mock_store_settings: StoreSettings) -> Store:
    return Store.from_settings(mock_store_settings)


@pytest.fixture
def history() -> pd.DataFrame:
    # one continuous history; each test stores a prefix of it and appends the following days
    return make_bars("MSFT", "2024-01-02", "2024-03-28")


def _days(history: pd.DataFrame) -> list[pd.Timestamp]:
    return list(history["date"])


def _append_day(store: Store, history: pd.DataFrame, day: pd.Timestamp) -> None:
    # an incremental fetch: the previous (stored) session as overlap, plus the new one
    days = _days(history)
    i = days.index(day)
    store.upsert_bars(history.iloc[i - 1 : i + 1], expect_unchanged={("MSFT", days[i - 1])})


def _january_plus(
    store: Store, history: pd.DataFrame, appended: int
) -> tuple[list[pd.Timestamp], int]:
    """January stored as one base file, then ``appended`` sessions appended one at a time;
    returns the sessions of ``history`` and January's row count."""
    days = _days(history)
    n = int((history["date"] < "2024-02-01").sum())
    store.upsert_bars(history.iloc[:n])
    for day in days[n : n + appended]:
        _append_day(store, history, day)
    return days, n


def _count_gets(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = store.get_bytes

    def counting(key: str) -> bytes:
        seen.append(key)
        return real(key)

    monkeypatch.setattr(store, "get_bytes", counting)
    return seen


def test_a_new_day_is_appended_as_a_delta_without_reading_the_partition(
    store: Store, history: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN January stored as one base file
    days = _days(history)
    jan = history[history["date"] < "2024-02-01"]
    store.upsert_bars(jan)
    base_key = store.list_keys(PARTITION)

    # WHEN the next session comes with the (unchanged) last stored day as overlap
    gets = _count_gets(store, monkeypatch)
    report = store.upsert_bars(
        history.iloc[len(jan) - 1 : len(jan) + 1], expect_unchanged={("MSFT", days[len(jan) - 1])}
    )
    monkeypatch.undo()

    # THEN nothing is read, one shared delta object is added; the base is untouched
    assert gets == []
    assert (report.rows_new, report.rows_changed, report.partitions_written) == (1, 0, 1)
    assert store.list_keys(PARTITION) == base_key
    assert len(store.list_keys(SHARED)) == 1
    # AND readers, last_dates and summary see base + delta as one partition
    back = store.read_bars(["MSFT"])
    pd.testing.assert_frame_equal(
        back, history.iloc[: len(jan) + 1].reset_index(drop=True), check_dtype=False
    )
    assert store.last_dates() == {"MSFT": days[len(jan)]}
    summary = store.summary().set_index("symbol")
    assert summary.loc["MSFT", "rows"] == len(jan) + 1
    assert summary.loc["MSFT", "partitions"] == 1


def test_rerun_writes_nothing_and_a_changed_overlap_in_a_delta_is_detected(
    store: Store, history: pd.DataFrame
) -> None:
    # GIVEN January and two appended days (the last stored day lives in a delta)
    days, n = _january_plus(store, history, 2)
    keys = store.list_keys(PARTITION)

    # WHEN the same day is ingested again
    again = store.upsert_bars(history.iloc[n : n + 2], expect_unchanged={("MSFT", days[n])})

    # THEN nothing is written
    assert (again.rows_new, again.rows_changed, again.partitions_written) == (0, 0, 0)
    assert store.list_keys(PARTITION) == keys

    # WHEN the provider's copy of the last stored day differs (a split) and a new day comes
    split = history.iloc[n + 1 : n + 3].copy()
    split[["open", "high", "low", "close"]] /= 2
    report = store.upsert_bars(split, expect_unchanged={("MSFT", days[n + 1])})

    # THEN the symbol is reported mismatched and nothing is written
    assert report.mismatched == frozenset({"MSFT"})
    assert store.list_keys(PARTITION) == keys
    assert len(store.read_bars(["MSFT"])) == n + 2


def test_a_correction_of_an_older_day_folds_the_deltas_into_a_new_base(
    store: Store, history: pd.DataFrame
) -> None:
    # GIVEN January and two appended days
    days, n = _january_plus(store, history, 2)

    # WHEN a January day is corrected
    fix = history.iloc[[5]].copy()
    fix["close"] += 0.1
    report = store.upsert_bars(fix)

    # THEN one base file holds everything, with the correction
    assert report.rows_changed == 1
    keys = store.list_keys(PARTITION)
    assert len(keys) == 1 and "/part-" in keys[0]
    back = store.read_bars(["MSFT"]).set_index("date")
    assert len(back) == n + 2
    assert back.loc[days[5], "close"] == fix["close"].iloc[0]
    assert back.loc[days[n + 1], "close"] == history.set_index("date").loc[days[n + 1], "close"]


def test_compaction_after_max_deltas(store: Store, history: pd.DataFrame) -> None:
    # GIVEN January and MAX_DELTAS appended days (MAX_DELTAS delta files)
    days, n = _january_plus(store, history, MAX_DELTAS)
    assert len(store.list_keys(SHARED)) == MAX_DELTAS

    # WHEN one more day comes
    _append_day(store, history, days[n + MAX_DELTAS])

    # THEN the partition is compacted into one base file holding every row exactly once,
    # and the delta objects, now superseded, are gone
    keys = store.list_keys(PARTITION)
    assert len(keys) == 1 and "/part-" in keys[0]
    assert store.list_keys(SHARED) == []
    back = store.read_bars(["MSFT"])
    pd.testing.assert_frame_equal(
        back, history.iloc[: n + MAX_DELTAS + 1].reset_index(drop=True), check_dtype=False
    )


def test_crash_during_compaction_before_the_swap_loses_nothing(
    store: Store, history: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a partition with MAX_DELTAS deltas
    days, n = _january_plus(store, history, MAX_DELTAS)

    # WHEN the compacting upsert dies after writing the new base, before deleting the old files
    def crash(keys: object) -> None:
        raise StoreError("simulated crash before the swap")

    monkeypatch.setattr(store, "delete_keys", crash)
    with pytest.raises(StoreError, match="simulated crash"):
        _append_day(store, history, days[n + MAX_DELTAS])
    monkeypatch.undo()

    # THEN old base, deltas and new base all exist, yet every row is read exactly once
    assert len(store.list_keys(PARTITION)) == 2
    assert len(store.list_keys(SHARED)) == MAX_DELTAS
    expected = history.iloc[: n + MAX_DELTAS + 1].reset_index(drop=True)
    pd.testing.assert_frame_equal(store.read_bars(["MSFT"]), expected, check_dtype=False)
    assert store.summary().set_index("symbol").loc["MSFT", "rows"] == len(expected)
    # AND after the next day (a plain delta), the next merge removes the leftovers
    _append_day(store, history, days[n + MAX_DELTAS + 1])
    assert store.compact(symbols=["MSFT"]) == 1
    assert len(store.list_keys(PARTITION)) == 1
    assert store.list_keys(SHARED) == []
    assert len(store.read_bars(["MSFT"])) == len(expected) + 1


def test_crash_while_writing_a_delta_keeps_the_previous_data(
    store: Store, history: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN January and one appended day
    days, n = _january_plus(store, history, 1)
    before = store.read_bars()

    # WHEN the writer dies on the PUT of the next delta
    def dying_put(key: str, data: bytes) -> None:
        raise StoreError("simulated crash during PUT")

    monkeypatch.setattr(store, "put_bytes", dying_put)
    with pytest.raises(StoreError):
        _append_day(store, history, days[n + 1])
    monkeypatch.undo()

    # THEN the data are exactly the previous ones, and a retry appends the day once
    pd.testing.assert_frame_equal(store.read_bars(), before)
    _append_day(store, history, days[n + 1])
    _append_day(store, history, days[n + 1])
    back = store.read_bars()
    assert len(back) == n + 2 and not back.duplicated(["symbol", "date"]).any()


def test_an_atomic_upsert_is_one_object_across_years_then_compacted(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a history over two years (two partitions) and one appended day
    hist = make_bars("MSFT", "2023-11-01", "2024-02-29")
    n = int((hist["date"] < "2024-02-01").sum())
    store.upsert_bars(hist.iloc[:n])
    _append_day(store, hist, hist["date"].iloc[n])

    # WHEN every stored day is re-adjusted in one atomic upsert
    adjusted = hist.iloc[: n + 1].copy()
    adjusted[["open", "high", "low", "close", "adj_close"]] /= 2
    puts: list[str] = []
    real = store.put_bytes
    monkeypatch.setattr(store, "put_bytes", lambda k, d: (puts.append(k), real(k, d))[1])
    report = store.upsert_bars(adjusted, atomic=True)
    monkeypatch.undo()

    # THEN it was ONE object (readers see all of it or none), read over the old files
    assert len(puts) == 1 and puts[0].startswith(SHARED)
    assert report.rows_changed == n + 1 and report.rows_new == 0
    pd.testing.assert_frame_equal(
        store.read_bars(["MSFT"]), adjusted.reset_index(drop=True), check_dtype=False
    )
    assert store.summary().set_index("symbol").loc["MSFT", "rows"] == n + 1
    # AND compaction leaves one base per year and no shared object, with the same rows
    assert store.compact(symbols=["MSFT"]) == 2
    assert len(store.list_keys("raw/year=2023/symbol=MSFT/")) == 1
    assert len(store.list_keys(PARTITION)) == 1 and store.list_keys(SHARED) == []
    pd.testing.assert_frame_equal(
        store.read_bars(["MSFT"]), adjusted.reset_index(drop=True), check_dtype=False
    )


def test_a_writer_finding_copies_of_its_days_merges_them(
    store: Store, history: pd.DataFrame, mock_store_settings: StoreSettings
) -> None:
    # GIVEN January, and the next two days appended by two writers that listed the same state
    days, n = _january_plus(store, history, 0)
    listing = store.list_parts(symbols=["MSFT"], latest=True)
    new = history.iloc[n - 1 : n + 2]
    overlap = {("MSFT", days[n - 1])}
    first = Store.from_settings(mock_store_settings).upsert_bars(new, overlap, parts=listing)
    second = Store.from_settings(mock_store_settings).upsert_bars(new, overlap, parts=listing)

    # THEN the second writer, finding the first one's copy after its PUT, merged both into
    # one base in a second round
    assert (first.attempts, second.attempts) == (1, 2)
    assert len(store.list_keys(PARTITION)) == 1 and store.list_keys(SHARED) == []
    pd.testing.assert_frame_equal(
        store.read_bars(["MSFT"]), history.iloc[: n + 2].reset_index(drop=True), check_dtype=False
    )


def test_one_append_of_many_symbols_is_one_object_and_each_symbol_compacts_alone(
    store: Store, mock_store_settings: StoreSettings
) -> None:
    # GIVEN three symbols with January stored
    hist = {
        s: make_bars(s, "2024-01-02", "2024-02-29", base=b)
        for s, b in [("AAA", 10.0), ("BBB", 20.0), ("CCC", 30.0)]
    }
    n = int((hist["AAA"]["date"] < "2024-02-01").sum())
    days = list(hist["AAA"]["date"])
    store.upsert_bars(pd.concat(h.iloc[:n] for h in hist.values()))

    # WHEN two daily runs append one session to all three symbols at once
    for i in (n, n + 1):
        overlap = {(s, days[i - 1]) for s in hist}
        report = store.upsert_bars(
            pd.concat(h.iloc[i - 1 : i + 1] for h in hist.values()), expect_unchanged=overlap
        )
        assert report.rows_new == 3 and report.partitions_written == 3

    # THEN each run wrote ONE object, and a fresh Store (nothing cached) reads every row once
    assert len(store.list_keys(SHARED)) == 2
    fresh = Store.from_settings(mock_store_settings)
    back = fresh.read_bars()
    assert len(back) == 3 * (n + 2) and not back.duplicated(["symbol", "date"]).any()
    assert fresh.last_dates() == {s: days[n + 1] for s in hist}

    # WHEN one symbol's older day is corrected (its partition is merged into a new base)
    fix = hist["BBB"].iloc[[3]].copy()
    fix["close"] += 0.5
    fresh.upsert_bars(fix)

    # THEN the shared objects stay (the others' rows live there) and no row is lost or doubled
    assert len(store.list_keys(SHARED)) == 2
    back = Store.from_settings(mock_store_settings).read_bars()
    assert len(back) == 3 * (n + 2) and not back.duplicated(["symbol", "date"]).any()
    assert back.set_index(["symbol", "date"]).loc[("BBB", days[3]), "close"] == fix["close"].iloc[0]

    # WHEN the others are merged too, the shared objects hold nothing live and are deleted
    for s in ("AAA", "CCC"):
        fix = hist[s].iloc[[3]].copy()
        fix["close"] += 0.5
        store.upsert_bars(fix)
    assert store.list_keys(SHARED) == []
    assert len(store.read_bars()) == 3 * (n + 2)
