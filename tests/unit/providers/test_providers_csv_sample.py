"""The csv provider (folder or S3 prefix) and the sample provider (embedded real data)."""

from __future__ import annotations

import shutil
from datetime import date

import boto3
import pandas as pd
import pytest

from stockml.calendar import is_session, sessions
from stockml.errors import ConfigError, ProviderError, UnknownSymbolError, ValidationError
from stockml.providers.csv import CsvProvider
from stockml.providers.sample import SAMPLE_SYMBOLS, SampleProvider
from stockml.schemas import BAR_COLUMNS, validate_bars
from utils.provider_data import OWN

ALL_TIME = (date(1980, 1, 1), date(2030, 1, 1))


# --- csv ---------------------------------------------------------------------------------


def test_lowercase_header_and_shuffled_rows():
    # GIVEN our own MSFT.csv: lower-case header (``adj close``), rows in random order
    raw = pd.read_csv(OWN / "csv" / "MSFT.csv")
    assert not raw["date"].is_monotonic_increasing

    # WHEN
    bars = CsvProvider(OWN / "csv").fetch_bars("MSFT", *ALL_TIME)

    # THEN sorted by date, every column mapped, all valid
    assert bars["date"].is_monotonic_increasing
    assert len(bars) == len(raw)
    assert list(bars.columns) == BAR_COLUMNS
    first = raw.sort_values("date").iloc[0]
    assert bars["adj_close"].iloc[0] == pytest.approx(first["adj close"])
    assert bars["volume"].iloc[0] == pytest.approx(first["volume"])
    assert len(validate_bars(bars).rejected) == 0


def test_close_only_uppercase_file_fills_ohlc_and_leaves_volume_missing():
    # GIVEN our own ^VIX.csv with only DATE and CLOSE
    # WHEN
    bars = CsvProvider(OWN / "csv").fetch_bars("^VIX", date(2017, 3, 1), date(2017, 3, 3))

    # THEN open = high = low = close = adj_close, volume NaN, and that is valid
    assert len(bars) == 3
    for col in ("open", "high", "low", "adj_close"):
        assert (bars[col] == bars["close"]).all()
    assert bars["volume"].isna().all()
    assert len(validate_bars(bars).rejected) == 0


def test_missing_file_is_an_unknown_symbol(tmp_path):
    # GIVEN an empty folder / WHEN / THEN
    with pytest.raises(UnknownSymbolError):
        CsvProvider(tmp_path).fetch_bars("MSFT", *ALL_TIME)


@pytest.mark.integration
def test_s3_prefix_on_moto_server(store_settings):
    # GIVEN our MSFT.csv uploaded under s3://<bucket>/csv/ on the session's moto_server
    s3 = boto3.client("s3", endpoint_url=store_settings.endpoint_url, region_name="us-east-1")
    s3.put_object(
        Bucket=store_settings.bucket,
        Key="csv/MSFT.csv",
        Body=(OWN / "csv" / "MSFT.csv").read_bytes(),
    )
    provider = CsvProvider(
        f"s3://{store_settings.bucket}/csv", endpoint_url=store_settings.endpoint_url
    )

    # WHEN
    bars = provider.fetch_bars("MSFT", *ALL_TIME)

    # THEN the same bars as from the folder; a missing object is an unknown symbol
    local = CsvProvider(OWN / "csv").fetch_bars("MSFT", *ALL_TIME)
    pd.testing.assert_frame_equal(bars, local)
    with pytest.raises(UnknownSymbolError):
        provider.fetch_bars("AAPL", *ALL_TIME)


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("relative", "symbol", "first", "rows"),
    [
        ("prices/daily/backtrader/nvda-1999-2014.txt", "NVDA", "1999-01-22", 4012),
        ("prices/daily/pandas-ta/SPY_D.csv", "SPY", "1999-11-01", 5241),
        (
            "prices/daily/cboe-vix/vix-daily-1990-01-02_to_2020-08-31.csv",
            "^VIX",
            "1990-01-02",
            7724,
        ),
        ("prices/quirks/yfinance-repair/AET-L-1d-100x-error.csv", "AET.L", "2022-05-03", 23),
        ("prices/quirks/yfinance-repair/CALM-1d-no-bad-divs.csv", "CALM", "2022-01-03", 662),
    ],
)
def test_real_files_in_their_own_header_styles(
    shared_data, tmp_path, relative, symbol, first, rows
):
    # GIVEN a real file copied (outside the project) to <tmp>/<SYMBOL>.csv: Yahoo-style,
    # lower-case with an unnamed index, upper-case without volume, descending rows with
    # +01:00 stamps, stamps whose offset changes with DST
    shutil.copy(shared_data / relative, tmp_path / f"{symbol}.csv")

    # WHEN
    bars = CsvProvider(tmp_path).fetch_bars(symbol, *ALL_TIME)

    # THEN every row is read, ascending, dated by the local (exchange) date
    assert len(bars) == rows
    assert bars["date"].iloc[0] == pd.Timestamp(first)
    assert bars["date"].is_monotonic_increasing
    assert bars["date"].is_unique
    assert (bars["date"].dt.day_of_week < 5).all()


def test_a_symbol_never_names_a_file_outside_the_folder(tmp_path):
    # GIVEN a folder of csv files, and a readable CSV file just outside it
    inside = tmp_path / "csv"
    inside.mkdir()
    shutil.copy(OWN / "csv" / "MSFT.csv", tmp_path / "OUTSIDE.csv")
    provider = CsvProvider(inside)

    # WHEN a symbol that is a path is asked for THEN it is refused, nothing is read
    with pytest.raises(ValidationError, match="invalid symbol"):
        provider.fetch_bars("../OUTSIDE", *ALL_TIME)

    # AND a link inside the folder that leads out of it is not followed
    (inside / "LINK.csv").symlink_to(tmp_path / "OUTSIDE.csv")
    with pytest.raises(ProviderError, match="outside"):
        provider.fetch_bars("LINK", *ALL_TIME)


def test_a_path_that_is_not_a_folder_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigError, match="not a folder"):
        CsvProvider(tmp_path / "missing")


def test_an_unparseable_date_costs_its_row_only(tmp_path):
    # GIVEN a CSV whose third row has a date no calendar knows, and a non-numeric close
    (tmp_path / "MSFT.csv").write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2024-07-01,10,11,9,10.5,10.4,100\n"
        "2024-07-02,10,11,9,abc,10.4,100\n"
        "2024-13-45,10,11,9,10.5,10.4,100\n"
        "2024-07-03,10,11,9,10.5,10.4,100\n"
    )

    # WHEN fetched (nothing raises) and validated
    bars = CsvProvider(tmp_path).fetch_bars("MSFT", date(2024, 7, 1), date(2024, 7, 3))
    result = validate_bars(bars)

    # THEN the good rows pass, and each bad row goes to quarantine with its original text
    assert len(bars) == 4
    assert result.valid["date"].dt.day.tolist() == [1, 3]
    assert sorted(result.rejected["reason"]) == [
        "non-numeric close 'abc'",
        "unparseable date '2024-13-45'",
    ]


def test_a_file_crossing_a_dst_change_keeps_local_dates(tmp_path):
    # GIVEN stamps with offsets that change at the DST switch (2022-03-13)
    (tmp_path / "SPY.csv").write_text(
        "Date,Open,High,Low,Close\n"
        "2022-03-11 00:00:00-05:00,10,11,9,10.5\n"
        "2022-03-14 00:00:00-04:00,10,11,9,10.5\n"
    )
    # WHEN / THEN the local date of each stamp is its exchange date
    bars = CsvProvider(tmp_path).fetch_bars("SPY", *ALL_TIME)
    assert bars["date"].dt.strftime("%Y-%m-%d").tolist() == ["2022-03-11", "2022-03-14"]


def test_of_duplicate_dates_in_a_file_the_first_copy_is_kept(tmp_path):
    # GIVEN a month of sessions, newest first as vendors often write them, that lists
    # 2024-07-02 twice: first with close 10.5, then with 99.0
    days = sessions("2024-06-03", "2024-07-03")[::-1]
    lines = ["Date,Open,High,Low,Close"]
    for day in days:
        lines += [f"{day:%Y-%m-%d},10,100,9,{c}" for c in ([10.5, 99.0] if day.day == 2 else [10])]
    (tmp_path / "MSFT.csv").write_text("\n".join(lines) + "\n")

    # WHEN fetched and validated
    bars = CsvProvider(tmp_path).fetch_bars("MSFT", *ALL_TIME)
    result = validate_bars(bars)

    # THEN the FIRST copy of the file is kept, the second quarantined as a duplicate
    assert len(result.valid) == len(days)
    assert result.valid.set_index("date").loc["2024-07-02", "close"] == 10.5
    assert result.rejected["close"].tolist() == [99.0]


# --- sample ------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", SAMPLE_SYMBOLS)
def test_each_sample_symbol_loads_valid_session_bars(symbol):
    # GIVEN / WHEN the embedded data of one symbol
    bars = SampleProvider().fetch_bars(symbol, *ALL_TIME)

    # THEN non-empty, valid (VIX included: close-only is not bad data), source "sample"
    assert len(bars) > 1000
    result = validate_bars(bars)
    assert len(result.rejected) == 0, result.rejected["reason"].value_counts().to_dict()
    assert (bars["source"] == "sample").all()
    assert (bars["symbol"] == symbol).all()


def test_msft_range_and_missing_adj_close():
    # GIVEN / WHEN
    bars = SampleProvider().fetch_bars("MSFT", *ALL_TIME)

    # THEN the documented range, and adj_close = close (the file has no Adj Close)
    assert bars["date"].iloc[0] == pd.Timestamp("1986-03-13")
    assert bars["date"].iloc[-1] == pd.Timestamp("2017-11-10")
    assert (bars["adj_close"] == bars["close"]).all()


def test_vix_holiday_placeholders_are_dropped_not_sessions():
    # GIVEN arch's VIX file, which carries NaN rows
    from arch.data import vix

    raw = vix.load()
    holes = raw.index[raw["vix"].isna()]
    assert len(holes) > 0

    # WHEN
    bars = SampleProvider().fetch_bars("^VIX", *ALL_TIME)

    # THEN exactly the NaN rows are gone, and none of them was an NYSE session
    assert len(bars) == len(raw) - len(holes)
    assert not any(is_session(d) for d in holes)
    assert (bars["open"] == bars["close"]).all() and bars["volume"].isna().all()


def test_start_end_are_respected_and_unknown_symbol_raises():
    # GIVEN / WHEN one week of ^GSPC
    bars = SampleProvider().fetch_bars("^GSPC", date(2018, 12, 24), date(2018, 12, 31))

    # THEN only the sessions of that week (25 Dec is a holiday)
    assert [d.day for d in bars["date"]] == [24, 26, 27, 28, 31]
    with pytest.raises(UnknownSymbolError, match="AAPL"):
        SampleProvider().fetch_bars("AAPL", *ALL_TIME)
