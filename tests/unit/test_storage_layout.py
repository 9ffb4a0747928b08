"""The store's layout decisions as pure functions (no S3): which files readers see, when a
writer must write again, how copies of a row are folded."""

from __future__ import annotations

import pandas as pd

from stockml.storage.layout import VERSION_COLUMN, PartFile, conflicts, fold, hides, partitions


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
