"""The store (stockml.storage.store) on moto's in-process S3: partitions, upserts, crash safety,
quarantine."""

from __future__ import annotations

import pandas as pd
import pytest

from stockml.calendar import sessions
from stockml.errors import StoreError
from stockml.s3 import decode_symbol, encode_symbol
from stockml.settings import StoreSettings
from stockml.storage import Store
from utils.bars import make_bars


@pytest.fixture
def store(mock_store_settings: StoreSettings) -> Store:
    return Store.from_settings(mock_store_settings)


def test_symbols_round_trip_through_partition_keys(store: Store) -> None:
    # GIVEN bars of an index ticker with a caret, spanning a year boundary
    bars = make_bars("^GSPC", "2019-12-16", "2020-01-10")

    # WHEN they are upserted and read back
    report = store.upsert_bars(bars)
    back = store.read_bars(["^GSPC"])

    # THEN one partition per (symbol, year) exists, with the symbol escaped in the key
    keys = store.list_keys("raw/")
    assert report.partitions_written == 2 and len(keys) == 2
    assert all("/symbol=%5EGSPC/" in k for k in keys)
    assert {k.split("/")[1] for k in keys} == {"year=2019", "year=2020"}
    # AND the frame comes back identical
    pd.testing.assert_frame_equal(back, bars.reset_index(drop=True), check_dtype=False)
    assert decode_symbol(encode_symbol("BRK/B ^X=1")) == "BRK/B ^X=1"


def test_upsert_is_idempotent_and_writes_nothing_on_rerun(store: Store) -> None:
    # GIVEN a stored year of bars
    bars = make_bars("MSFT", "2023-01-01", "2023-12-31")
    store.upsert_bars(bars)
    keys_before = store.list_keys("raw/")

    # WHEN the very same bars are upserted again
    report = store.upsert_bars(bars)

    # THEN nothing is new, nothing is rewritten, and no key is duplicated
    assert (report.rows_new, report.rows_changed, report.partitions_written) == (0, 0, 0)
    assert store.list_keys("raw/") == keys_before
    back = store.read_bars(["MSFT"])
    assert len(back) == len(bars)
    assert not back.duplicated(["symbol", "date"]).any()


def test_upsert_replaces_changed_rows_and_appends_new_ones(store: Store) -> None:
    # GIVEN a stored month
    store.upsert_bars(make_bars("MSFT", "2024-01-01", "2024-01-31"))
    # WHEN a frame with one corrected day and two new days is upserted
    update = make_bars("MSFT", "2024-01-31", "2024-02-02", base=200.0)
    report = store.upsert_bars(update)

    # THEN the corrected day holds the new value, and the two days are added once each
    back = store.read_bars(["MSFT"])
    assert report.rows_new == 2 and report.rows_changed == 1
    assert back.set_index("date").loc["2024-01-31", "close"] == 200.0
    assert len(back) == len(sessions("2024-01-01", "2024-02-02"))
    assert not back.duplicated(["symbol", "date"]).any()
    # AND only the newest file of the rewritten partition is left
    assert len(store.list_keys("raw/year=2024/symbol=MSFT/")) == 1


def test_crash_between_write_and_swap_loses_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN two years stored
    old = make_bars("AAPL", "2022-06-01", "2023-06-30")
    store.upsert_bars(old)
    update = make_bars("AAPL", "2023-06-01", "2023-07-31", base=300.0)

    # WHEN the run dies right after writing the new files, before the old ones are deleted
    def crash(keys: object) -> None:
        raise StoreError("simulated crash before the swap")

    monkeypatch.setattr(store, "delete_keys", crash)
    with pytest.raises(StoreError, match="simulated crash"):
        store.upsert_bars(update)
    monkeypatch.undo()

    # THEN both file versions exist, yet readers see every row exactly once, the new values winning
    assert len(store.list_keys("raw/year=2023/symbol=AAPL/")) == 2
    back = store.read_bars(["AAPL"])
    expected_days = sessions("2022-06-01", "2023-07-31")
    assert len(back) == len(expected_days)  # 0 rows lost
    assert not back.duplicated(["symbol", "date"]).any()
    assert (
        back.set_index("date").loc["2023-06-30", "close"]
        == update.set_index("date").loc["2023-06-30", "close"]
    )
    # AND the next merge of that partition removes the leftover old base (an append keeps it:
    # only the newest base of a partition is trusted to hold what it hides)
    leftover = min(store.list_keys("raw/year=2023/symbol=AAPL/"))
    store.upsert_bars(make_bars("AAPL", "2023-08-01", "2023-08-02"))
    assert leftover in store.list_keys("raw/year=2023/symbol=AAPL/")
    assert store.compact(symbols=["AAPL"]) == 1
    keys = store.list_keys("raw/year=2023/symbol=AAPL/")
    assert leftover not in keys and len(keys) == 1
    assert store.list_keys("raw/_delta/") == []
    assert len(store.read_bars(["AAPL"])) == len(expected_days) + 2


def test_crash_while_writing_keeps_the_previous_data(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN stored 2022 and 2023 partitions
    old = make_bars("AAPL", "2022-10-01", "2023-03-31")
    store.upsert_bars(old)
    before = store.read_bars()
    real_put = store.put_bytes

    # WHEN the writer dies while PUTting the 2023 partition (2022 may already be written)
    def dying_put(key: str, data: bytes) -> None:
        if "year=2023" in key:
            raise StoreError("simulated crash during PUT")
        real_put(key, data)

    monkeypatch.setattr(store, "put_bytes", dying_put)
    with pytest.raises(StoreError):
        store.upsert_bars(make_bars("AAPL", "2022-12-01", "2023-04-28", base=50.0))
    monkeypatch.undo()

    # THEN the 2023 rows are exactly the previous ones: nothing lost, nothing duplicated
    after = store.read_bars()
    old_2023 = before[before["date"].dt.year == 2023].reset_index(drop=True)
    new_2023 = after[after["date"].dt.year == 2023].reset_index(drop=True)
    pd.testing.assert_frame_equal(new_2023, old_2023)
    assert not after.duplicated(["symbol", "date"]).any()


def test_bad_rows_are_quarantined_with_reason(store: Store) -> None:
    # GIVEN a week with one bar whose low is above its close, and one with a NaN price
    bars = make_bars("IBM", "2024-03-04", "2024-03-08")
    bars.loc[1, "low"] = bars.loc[1, "close"] + 5
    bars.loc[3, "adj_close"] = float("nan")

    # WHEN it is upserted
    report = store.upsert_bars(bars)

    # THEN the 3 good rows are stored and the 2 bad ones are in quarantine with reasons
    assert report.rows_quarantined == 2 and report.rows_valid == 3
    assert len(store.read_bars(["IBM"])) == 3
    quarantined = store.read_quarantine()
    assert sorted(quarantined["date"].dt.strftime("%Y-%m-%d")) == ["2024-03-05", "2024-03-07"]
    reasons = dict(
        zip(quarantined["date"].dt.strftime("%Y-%m-%d"), quarantined["reason"], strict=True)
    )
    assert "low above min(open, close)" in reasons["2024-03-05"]
    assert "NaN price" in reasons["2024-03-07"]
    assert quarantined["quarantined_at"].notna().all()
    assert all(k.startswith("quarantine/stage=raw/") for k in store.list_keys("quarantine/"))


def test_reads_filter_symbols_and_dates_and_report_summary(store: Store) -> None:
    # GIVEN three symbols over three years
    for i, symbol in enumerate(["A", "B", "^VIX"]):
        store.upsert_bars(make_bars(symbol, "2021-01-01", "2023-12-31", base=10.0 + i))

    # WHEN a slice is read
    part = store.read_bars(["B", "^VIX"], start="2022-03-01", end="2022-03-31")

    # THEN only those symbols and days come back, sorted
    assert set(part["symbol"]) == {"B", "^VIX"}
    assert part["date"].min() >= pd.Timestamp("2022-03-01")
    assert part["date"].max() <= pd.Timestamp("2022-03-31")
    assert len(part) == 2 * len(sessions("2022-03-01", "2022-03-31"))
    assert part.equals(part.sort_values(["symbol", "date"]).reset_index(drop=True))
    # AND last dates and the summary come from the object names alone
    last = store.last_dates()
    assert last == {s: sessions("2023-12-01", "2023-12-31")[-1] for s in ["A", "B", "^VIX"]}
    summary = store.summary().set_index("symbol")
    assert summary.loc["^VIX", "rows"] == len(sessions("2021-01-01", "2023-12-31"))
    assert summary.loc["A", "partitions"] == 3
    assert store.read_bars(["NOPE"]).empty


def test_generic_tables_hold_news_and_features(store: Store) -> None:
    # GIVEN news with UTC timestamps keyed by (symbol, url), and a features frame
    news = pd.DataFrame(
        {
            "symbol": ["MSFT", "MSFT", "MSFT"],
            "published_at": pd.to_datetime(
                ["2023-12-31T23:30:00Z", "2024-01-02T14:00:00Z", "2024-01-02T15:00:00Z"], utc=True
            ),
            "title": ["a", "b", "c"],
            "summary": ["", "", ""],
            "url": ["u1", "u2", "u3"],
            "source": ["x", "x", "x"],
        }
    )
    features = make_bars("MSFT", "2024-01-01", "2024-01-10")[["symbol", "date", "close"]]
    features["rsi_14"] = 55.0

    # WHEN they are upserted twice (the second time with one title corrected)
    store.upsert_table("news", news, key=("symbol", "url"))
    news.loc[2, "title"] = "c2"
    again = store.upsert_table("news", news, key=("symbol", "url"))
    store.upsert_table("features", features)

    # THEN each row exists once, the correction is kept, partitions follow the UTC year
    got = store.read_table("news", ["MSFT"], start="2024-01-01")
    assert list(got["url"]) == ["u2", "u3"] and got["title"].iloc[-1] == "c2"
    assert again.rows_changed == 1 and again.rows_new == 0
    assert {k.split("/")[1] for k in store.list_keys("news/")} == {"year=2023", "year=2024"}
    pd.testing.assert_frame_equal(
        store.read_table("features"), features.reset_index(drop=True), check_dtype=False
    )


def test_two_stores_are_independent(store: Store) -> None:
    # GIVEN a second bucket
    import boto3

    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=store.bucket + "-b")
    other = Store(store.bucket + "-b")

    # WHEN each store gets different bars
    store.upsert_bars(make_bars("A", "2024-01-02", "2024-01-05"))
    other.upsert_bars(make_bars("B", "2024-01-02", "2024-01-05"))

    # THEN neither sees the other's data
    assert set(store.read_bars()["symbol"]) == {"A"}
    assert set(other.read_bars()["symbol"]) == {"B"}


def test_a_latest_listing_covers_the_newest_years_and_older_rows_are_still_merged(
    store: Store,
) -> None:
    # GIVEN AAA stored over 2022-2024 and BBB over 2022-2023
    aaa = make_bars("AAA", "2022-10-03", "2024-02-29", base=10.0)
    bbb = make_bars("BBB", "2022-10-03", "2023-12-29", base=20.0)
    store.upsert_bars(pd.concat([aaa, bbb]))

    # WHEN the daily run lists the newest years only
    listing = store.list_parts(symbols=["AAA", "BBB"], latest=True)

    # THEN it stopped at 2023, the year by which both symbols have rows
    assert {p.year for p in listing} == {2023, 2024}
    assert listing.since_year == 2023
    assert store.last_dates(parts=listing) == {
        "AAA": aaa["date"].iloc[-1],
        "BBB": bbb["date"].iloc[-1],
    }

    # WHEN a 2022 row (outside that listing) is corrected through it
    fix = aaa[aaa["date"].dt.year == 2022].iloc[[2]].copy()
    fix["close"] += 0.25
    report = store.upsert_bars(fix, parts=listing)

    # THEN the 2022 partition is listed after all: the row replaced, nothing lost or doubled
    assert (report.rows_new, report.rows_changed) == (0, 1)
    back = store.read_bars(["AAA"]).set_index("date")
    assert len(back) == len(aaa)
    assert back.loc[fix["date"].iloc[0], "close"] == fix["close"].iloc[0]
    assert len(store.list_keys("raw/year=2022/symbol=AAA/")) == 1
