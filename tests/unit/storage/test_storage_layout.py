"""The store's layout as pure functions (stockml.storage.layout, no S3): which files readers see,
when a writer must write again, how copies of a row are folded, how objects are named, when a
write appends and what a merge writes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stockml.storage.layout import (
    VERSION_COLUMN,
    PartFile,
    Partition,
    base_key,
    conflicts,
    decide,
    fold,
    from_parquet,
    hides,
    is_shared_key,
    merge_rows,
    parse_key,
    partitions,
    row_digest,
    shared_key,
    shared_parts,
    stamp,
    to_parquet,
)
from utils.bars import make_bars


def v(n: int) -> str:
    return f"{n:020d}-{n:08x}"


def part(
    name: str,
    version: int,
    first: str = "2024-01-02",
    last: str = "2024-01-31",
    rows: int = 21,
    horizon: int | None = None,
    delta: bool = False,
    tail: str | None = "a" * 16,
    symbol: str = "MSFT",
) -> PartFile:
    return PartFile(
        key=f"{name}.parquet",
        symbol=symbol,
        year=2024,
        version=v(version),
        first=pd.Timestamp(first),
        last=pd.Timestamp(last),
        rows=rows,
        delta=delta,
        tail=tail,
        horizon=None if horizon is None else v(horizon),
        shared=delta,
    )


def test_a_base_hides_exactly_the_files_up_to_its_horizon() -> None:
    base = part("base", 10, horizon=7)
    assert hides(base, part("read", 7, delta=True))
    assert hides(base, part("older", 3))
    # written concurrently with a newer version: stays visible
    assert not hides(base, part("newer", 8, delta=True))
    assert not hides(base, base)
    assert not hides(part("delta", 20, delta=True), part("older", 3))
    # a base named before horizons existed hides every older file
    legacy = part("legacy", 10)
    assert hides(legacy, part("older", 9, delta=True)) and not hides(legacy, part("newer", 11))


def test_readers_see_the_newest_base_and_the_deltas_after_it() -> None:
    old_base = part("b0", 1, last="2024-01-29", rows=19, horizon=0)
    d1 = part("d1", 2, first="2024-01-30", last="2024-01-30", rows=1, delta=True)
    base = part("b1", 5, last="2024-01-30", rows=20, horizon=2)
    d2 = part("d2", 6, first="2024-01-31", last="2024-01-31", rows=1, delta=True, tail="b" * 16)
    (state,) = partitions([d2, base, d1, old_base]).values()
    assert state.live == (base, d2)
    assert not state.overlapping and state.rows == 21 and state.tail == "b" * 16
    assert state.last == pd.Timestamp("2024-01-31") and state.deltas == 1


def test_two_merges_racing_leave_two_live_bases_that_readers_fold() -> None:
    # GIVEN two bases merged from the same files (neither read the other): a fork
    a = part("fork-a", 5, horizon=2)
    b = part("fork-b", 6, horizon=2, tail="c" * 16)
    (state,) = partitions([part("b0", 1, horizon=0), a, b]).values()
    # THEN both are live, the partition is flagged overlapping, its row count unknown from
    # names (an upper bound), and its last row's digest ambiguous (so no append without a read)
    assert state.live == (a, b)
    assert state.overlapping and state.rows == 42 and state.tail is None


def test_concurrent_appends_of_the_same_days_overlap() -> None:
    base = part("b0", 1, last="2024-01-29", rows=19, horizon=0)
    mine = part("d-mine", 3, first="2024-01-30", last="2024-01-31", rows=2, delta=True)
    theirs = part("d-theirs", 4, first="2024-01-30", last="2024-01-31", rows=2, delta=True)
    (state,) = partitions([base, mine, theirs]).values()
    assert state.live == (base, mine, theirs) and state.overlapping
    # the writer with the older version finds the other one newer: it writes again (a merge)
    assert conflicts({("MSFT", 2024): mine}, partitions([base, mine, theirs])) == {("MSFT", 2024)}
    assert conflicts({("MSFT", 2024): theirs}, partitions([base, mine, theirs])) == set()


def test_a_delta_hidden_by_a_merge_that_did_not_read_it_is_flagged_to_its_writer() -> None:
    # GIVEN a merge that listed b0 and d3 (the newest version it read: 3) ...
    b0 = part("b0", 1, last="2024-01-29", rows=19, horizon=0)
    d3 = part("d3", 3, first="2024-01-30", last="2024-01-30", rows=1, delta=True)
    merged = part("b-merge", 9, last="2024-01-30", rows=20, horizon=3)
    # ... and a delta whose version (2) was chosen earlier but whose PUT landed after that LIST
    late = part("late", 2, first="2024-01-31", last="2024-01-31", rows=1, delta=True)
    # THEN the merge's base hides it although it does not hold its row ...
    (state,) = partitions([b0, d3, late, merged]).values()
    assert late not in state.live
    # ... and whatever the order, the late delta's writer sees a newer file after its PUT:
    # d3 (read by the merge) when it lists before the merge's PUT, the base after it
    slot = ("MSFT", 2024)
    assert conflicts({slot: late}, partitions([b0, d3, late])) == {slot}
    assert conflicts({slot: late}, partitions([merged, late])) == {slot}
    # while a delta the merge did read, or one written after it, is never flagged
    assert conflicts({slot: d3}, partitions([b0, d3])) == set()
    after = part("after", 10, first="2024-01-31", last="2024-01-31", rows=1, delta=True)
    assert conflicts({slot: after}, partitions([merged, after])) == set()


def test_other_partitions_never_conflict() -> None:
    mine = part("d-mine", 3, delta=True)
    other = part("d-other", 9, delta=True, symbol="AAPL")
    assert conflicts({("MSFT", 2024): mine}, partitions([mine, other])) == set()


def test_fold_keeps_the_copy_written_last() -> None:
    frame = pd.DataFrame(
        {
            "symbol": ["A", "A", "A", "B"],
            "date": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-02", "2024-01-02"]),
            "close": [1.0, 2.0, 9.0, 5.0],
            VERSION_COLUMN: [v(5), v(5), v(7), v(1)],
        }
    )
    out = fold(frame, ["symbol", "date"])
    assert len(out) == 3
    assert out.set_index(["symbol", "date"]).loc[("A", pd.Timestamp("2024-01-02")), "close"] == 9.0
    # the input order does not matter
    back = fold(frame.iloc[::-1], ["symbol", "date"])
    pd.testing.assert_frame_equal(
        out.sort_values(["symbol", "date"]).reset_index(drop=True),
        back.sort_values(["symbol", "date"]).reset_index(drop=True),
    )


# ---------------------------------------------------------------------- object names


def test_a_base_key_names_what_the_file_holds_and_parses_back() -> None:
    # GIVEN the rows of a caret symbol's partition, stamped with a version
    rows = stamp(make_bars("^GSPC", "2024-01-02", "2024-01-31"), v(42))

    # WHEN its base is named and the name parsed
    key = base_key("raw", "^GSPC", 2024, v(42), rows, horizon=v(40))
    got = parse_key("raw", key)

    # THEN the key is Hive-escaped and the name alone gives the span, rows, tail and horizon
    assert key.startswith("raw/year=2024/symbol=%5EGSPC/part-")
    assert got is not None and not got.delta and not got.shared
    assert (got.symbol, got.year, got.version, got.horizon) == ("^GSPC", 2024, v(42), v(40))
    assert (got.first, got.last) == (pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-31"))
    assert got.rows == 21  # the NYSE sessions of January 2024
    # the tail is the digest of the last row's values: a copy of that row matches it
    assert got.tail == row_digest(rows.iloc[[-1]], 0, ["symbol", "date"])


@pytest.mark.parametrize(
    "key",
    [
        "raw/_messages/abc.json",
        "raw/_adjustments/symbol=MSFT/20240101T000000.json",
        "raw/year=2024/symbol=MSFT/notes.txt",
        "raw/year=2024/symbol=MSFT/extra/part-x.parquet",
        "raw/_delta/delta-00000000000000000001-00000001_20240102_20240102_1.parquet",
    ],
)
def test_keys_that_are_not_a_year_folders_data_file_parse_to_none(key: str) -> None:
    assert parse_key("raw", key) is None


def test_a_shared_delta_object_holds_one_part_per_symbol_and_year() -> None:
    # GIVEN a shared append of two symbols across a year end, rows in no particular order
    a = make_bars("AAA", "2023-12-27", "2024-01-03", base=10.0)
    b = make_bars("BBB", "2024-01-02", "2024-01-03", base=50.0)
    rows = stamp(pd.concat([a, b]).sample(frac=1.0, random_state=3), v(7))
    key = shared_key("raw", v(7), rows)

    # WHEN its parts are read from its content
    parts, positions = shared_parts(key, rows)

    # THEN (AAA, 2023), (AAA, 2024), (BBB, 2024), each with its span, rows and last row's digest
    assert is_shared_key(key) and key.startswith("raw/_delta/delta-")
    by_slot = {(p.symbol, p.year): p for p in parts}
    assert sorted(by_slot) == [("AAA", 2023), ("AAA", 2024), ("BBB", 2024)]
    for (symbol, year), p in by_slot.items():
        expected = pd.concat([a, b])
        expected = expected[(expected["symbol"] == symbol) & (expected["date"].dt.year == year)]
        assert p.shared and p.delta and p.version == v(7) and p.key == key
        assert (p.first, p.last, p.rows) == (
            expected["date"].min(),
            expected["date"].max(),
            len(expected),
        )
        held = rows.iloc[positions[(symbol, year)]]
        assert list(held["date"]) == list(expected["date"])  # in date order
        assert p.tail == row_digest(expected.iloc[[-1]], 0, ["symbol", "date"])
    # AND a key that is not a shared object's has no parts
    assert shared_parts("raw/year=2024/symbol=AAA/x.parquet", rows) == ([], {})


def test_a_row_digest_ignores_dtypes_and_the_row_version_but_not_values() -> None:
    row = make_bars("MSFT", "2024-01-02", "2024-01-02")
    int_volume = row.astype({"volume": "int64"})
    restamped = stamp(row, v(9))
    changed = row.copy()
    changed["adj_close"] += 0.01
    nan = row.copy()
    nan["adj_close"] = np.nan
    digest = row_digest(row, 0, ["symbol", "date"])
    assert row_digest(int_volume, 0, ["symbol", "date"]) == digest
    assert row_digest(restamped, 0, ["symbol", "date"]) == digest
    assert row_digest(changed, 0, ["symbol", "date"]) != digest
    assert row_digest(nan, 0, ["symbol", "date"]) == row_digest(nan.copy(), 0, ["symbol", "date"])


def test_parquet_keeps_utc_timestamps_and_the_tables_key() -> None:
    news = pd.DataFrame(
        {
            "symbol": ["MSFT"],
            "published_at": pd.to_datetime(["2024-01-02T14:00:00Z"], utc=True),
            "url": ["u1"],
        }
    )
    back = from_parquet(to_parquet(news, ["symbol", "url"]))
    pd.testing.assert_frame_equal(back, news, check_dtype=False)
    assert str(back["published_at"].dt.tz) == "UTC"
    assert back.attrs["key"] == ["symbol", "url"]


def test_stamping_keeps_the_versions_of_rows_already_stored() -> None:
    rows = pd.DataFrame({"x": [1, 2, 3], VERSION_COLUMN: [v(1), None, v(2)]})
    assert list(stamp(rows, v(5))[VERSION_COLUMN]) == [v(1), v(5), v(2)]
    assert list(stamp(rows.drop(columns=VERSION_COLUMN), v(5))[VERSION_COLUMN]) == [v(5)] * 3


# ---------------------------------------------------------------------- appends and merges

KEY = ["symbol", "date"]
SLOT = ("MSFT", 2024)


def _stored(history: pd.DataFrame, n: int, deltas: int = 0) -> Partition:
    """The partition holding the first ``n`` days of ``history``, as the store names its files:
    a base, then ``deltas`` one-day shared deltas."""
    cut = n - deltas
    base = parse_key("raw", base_key("raw", "MSFT", 2024, v(1), stamp(history[:cut], v(1)), v(0)))
    files = [base]
    for i in range(deltas):
        rows = stamp(history.iloc[[cut + i]], v(2 + i))
        files += shared_parts(shared_key("raw", v(2 + i), rows), rows)[0]
    (state,) = partitions(f for f in files if f is not None).values()
    assert state.rows == n and state.deltas == deltas
    return state


def test_new_days_after_an_unchanged_overlap_day_are_appended_without_a_read() -> None:
    history = make_bars("MSFT", "2024-01-02", "2024-01-31")
    current = _stored(history, 10)
    fetched = history.iloc[9:12]  # the stored last day (unchanged) and two new ones

    merged = decide(SLOT, current, fetched, KEY, atomic=False, force=False, max_deltas=8)

    assert merged is not None and merged.delta and merged.new == 2
    assert merged.frame is not None and list(merged.frame["date"]) == list(history["date"][10:12])


@pytest.mark.parametrize(
    "case",
    ["changed overlap", "older day", "too many deltas", "other key", "forced"],
)
def test_anything_but_a_clean_append_needs_a_read(case: str) -> None:
    history = make_bars("MSFT", "2024-01-02", "2024-01-31")
    current = _stored(history, 10, deltas=2 if case == "too many deltas" else 0)
    rows, key, force = history.iloc[9:12].copy(), KEY, False
    if case == "changed overlap":
        rows.loc[rows.index[0], "adj_close"] += 0.5  # a dividend re-adjusted the stored day
    elif case == "older day":
        rows = history.iloc[5:12]
    elif case == "other key":
        key = ["symbol", "date", "source"]
    elif case == "forced":
        force = True

    assert decide(SLOT, current, rows, key, atomic=False, force=force, max_deltas=2) is None


def test_an_atomic_append_ignores_the_delta_limit_and_a_new_partition_is_written_whole() -> None:
    history = make_bars("MSFT", "2024-01-02", "2024-01-31")
    full = _stored(history, 10, deltas=2)
    appended = decide(SLOT, full, history.iloc[9:11], KEY, atomic=True, force=False, max_deltas=2)
    assert appended is not None and appended.delta and appended.new == 1
    whole = decide(SLOT, None, history, KEY, atomic=False, force=False, max_deltas=2)
    assert whole is not None and not whole.delta and whole.new == len(history)
    assert whole.frame is history


def test_a_merge_counts_new_and_changed_rows_and_the_new_row_wins() -> None:
    # GIVEN 10 stored days and rows that change day 3, repeat day 4 and add day 10
    history = make_bars("MSFT", "2024-01-02", "2024-01-31")
    current = _stored(history, 10)
    old = stamp(history.iloc[:10], v(1))
    rows = history.iloc[[3, 4, 10]].copy()
    rows.loc[rows.index[0], "close"] = 999.0

    # WHEN they are merged
    merged = merge_rows(SLOT, current, old, rows, KEY, set(), False, False, horizon=v(1))

    # THEN one new, one changed, the rest kept; the base is merged up to the horizon
    assert (merged.new, merged.changed, merged.mismatch, merged.delta) == (1, 1, False, False)
    assert merged.horizon == v(1) and merged.frame is not None
    out = merged.frame.set_index("date").sort_index()
    assert len(out) == 11 and out.loc[history["date"][3], "close"] == 999.0
    # the 8 stored rows not offered again keep their row version; the 3 offered rows (day 4,
    # unchanged, too) get the version of the write that stamps them
    assert (out[VERSION_COLUMN] == v(1)).sum() == 8
    assert out[VERSION_COLUMN].isna().sum() == 3


def test_a_merge_flags_a_changed_row_expected_unchanged() -> None:
    history = make_bars("MSFT", "2024-01-02", "2024-01-31")
    old = stamp(history.iloc[:10], v(1))
    rows = history.iloc[[9]].copy()
    rows["close"] += 1.0
    frozen = {("MSFT", history["date"][9])}
    merged = merge_rows(SLOT, _stored(history, 10), old, rows, KEY, frozen, False, False, v(1))
    assert merged.mismatch and merged.changed == 1


def test_an_atomic_merge_writes_only_new_and_changed_rows_as_a_delta() -> None:
    history = make_bars("MSFT", "2024-01-02", "2024-01-31")
    old = stamp(history.iloc[:10], v(1))
    rows = history.iloc[[2, 3, 10]].copy()
    rows.loc[rows.index[1], "close"] = 5.0
    merged = merge_rows(SLOT, _stored(history, 10), old, rows, KEY, set(), True, False, v(1))
    assert merged.delta and merged.frame is not None
    assert list(merged.frame["date"]) == [history["date"][3], history["date"][10]]


def test_a_merge_that_changes_nothing_writes_nothing_unless_forced() -> None:
    history = make_bars("MSFT", "2024-01-02", "2024-01-31")
    old = stamp(history.iloc[:10], v(1))
    current = _stored(history, 10)
    same = merge_rows(SLOT, current, old, history.iloc[2:5], KEY, set(), False, False, v(1))
    assert same.frame is None and (same.new, same.changed) == (0, 0)
    forced = merge_rows(SLOT, current, old, history.iloc[2:5], KEY, set(), False, True, v(1))
    assert forced.frame is not None and len(forced.frame) == 10
