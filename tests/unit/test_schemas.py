"""The bar schema and its validation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from stockml.errors import ValidationError
from stockml.schemas import BAR_COLUMNS, coerce_bars, empty_bars, validate_bars


def _bars(**overrides: list[object]) -> pd.DataFrame:
    data: dict[str, list[object]] = {
        "symbol": ["MSFT", "MSFT", "MSFT"],
        "date": ["2024-07-01", "2024-07-02", "2024-07-03"],
        "open": [10.0, 11.0, 12.0],
        "high": [11.0, 12.5, 12.2],
        "low": [9.5, 10.5, 11.0],
        "close": [10.5, 12.0, 11.5],
        "adj_close": [10.4, 11.9, 11.4],
        "volume": [100, 200, 300],
        "source": ["test"] * 3,
    }
    data.update(overrides)
    return pd.DataFrame(data)


def test_clean_bars_pass_and_keep_schema() -> None:
    # GIVEN three consistent bars
    # WHEN validated
    result = validate_bars(_bars())
    # THEN all pass, in the canonical columns and dtypes
    assert len(result.valid) == 3 and result.rejected.empty
    assert list(result.valid.columns) == BAR_COLUMNS
    assert result.valid["date"].dtype == "datetime64[ns]"
    assert result.valid["volume"].dtype == "float64"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"close": [10.5, np.nan, 11.5]}, "NaN price"),
        ({"open": [10.0, -1.0, 12.0]}, "non-positive price"),
        ({"low": [9.5, 11.5, 11.0]}, "low above min(open, close)"),
        ({"high": [11.0, 11.5, 12.2]}, "high below max(open, close)"),
        ({"date": ["2024-07-01", "2024-07-06", "2024-07-03"]}, "weekend date"),
        ({"date": ["2024-07-01", "2024-07-01", "2024-07-03"]}, "duplicate (symbol, date)"),
        ({"volume": [100, -5, 300]}, "negative volume"),
    ],
)
def test_bad_row_is_rejected_with_reason(overrides: dict[str, list[object]], reason: str) -> None:
    # GIVEN bars whose second row breaks one rule
    # WHEN validated
    result = validate_bars(_bars(**overrides))
    # THEN exactly that row is rejected, with the reason, and the others pass
    assert len(result.valid) == 2
    assert len(result.rejected) == 1
    assert reason in result.rejected.loc[0, "reason"]


def test_large_real_move_is_not_an_error() -> None:
    # GIVEN a +48% day (YHOO 2008-02-01 was real)
    bars = _bars(
        open=[10.0, 14.8, 14.0],
        high=[11.0, 15.0, 14.5],
        low=[9.5, 14.0, 13.5],
        close=[10.0, 14.8, 14.2],
        adj_close=[10.0, 14.8, 14.2],
    )
    # WHEN validated  THEN nothing is rejected
    assert validate_bars(bars).rejected.empty


def test_close_only_index_without_volume_is_valid() -> None:
    # GIVEN an index bar with only a close (open = high = low = close) and no volume
    bars = _bars(
        open=[20.0] * 3,
        high=[20.0] * 3,
        low=[20.0] * 3,
        close=[20.0] * 3,
        adj_close=[20.0] * 3,
        volume=[None] * 3,
    )
    # WHEN validated THEN it passes
    result = validate_bars(bars)
    assert len(result.valid) == 3 and result.valid["volume"].isna().all()


def test_missing_column_is_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="missing columns"):
        coerce_bars(_bars().drop(columns=["adj_close"]))


def test_tz_aware_dates_become_exchange_dates() -> None:
    # GIVEN a timestamp with a New York offset
    bars = _bars(date=pd.to_datetime(["2022-01-03 00:00:00-05:00"] * 3).tolist())
    # THEN the stored date is the calendar date, tz-naive midnight
    assert (coerce_bars(bars)["date"] == pd.Timestamp("2022-01-03")).all()


def test_empty_bars_has_schema() -> None:
    assert list(empty_bars().columns) == BAR_COLUMNS and empty_bars().empty


# --- validation at the edge: bad cells keep their text, first copy wins, holidays ----------

UNPARSED = "unparsed"  # the column that keeps the original text of unparseable cells


def test_an_unparseable_date_is_quarantined_with_its_text_and_the_others_pass() -> None:
    # GIVEN three bars, the second dated with text no calendar knows
    bars = _bars(date=["2024-07-01", "2024-13-45", "2024-07-03"])
    # WHEN validated (parsing is per row: nothing raises)
    result = validate_bars(bars)
    # THEN the two good rows pass and the bad one is quarantined with its original text
    assert result.valid["date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-07-01", "2024-07-03"]
    assert len(result.rejected) == 1
    assert result.rejected.loc[0, "reason"] == "unparseable date '2024-13-45'"
    assert json.loads(result.rejected.loc[0, UNPARSED]) == {"date": "2024-13-45"}


def test_non_numeric_values_are_quarantined_with_their_text_not_as_nan() -> None:
    # GIVEN a price and a volume that are text, not numbers
    bars = _bars(close=[10.5, "12,0", 11.5], volume=[100, 200, "1.2M"])
    # WHEN validated
    result = validate_bars(bars)
    # THEN each row is quarantined naming the column and the text it held
    reasons = dict(zip(result.rejected["date"].dt.day, result.rejected["reason"], strict=True))
    assert reasons == {2: "non-numeric close '12,0'", 3: "non-numeric volume '1.2M'"}
    texts = [json.loads(t) for t in result.rejected[UNPARSED]]
    assert texts == [{"close": "12,0"}, {"volume": "1.2M"}]
    assert len(result.valid) == 1


def test_the_text_survives_a_second_coercion() -> None:
    # GIVEN bars coerced once already (a provider does it before the store validates)
    once = coerce_bars(_bars(open=[10.0, "n.a.", 12.0], date=["2024-07-01", "2024-07-02", "x"]))
    # WHEN validated
    result = validate_bars(once)
    # THEN the original text of both cells is still there
    assert sorted(result.rejected["reason"]) == ["non-numeric open 'n.a.'", "unparseable date 'x'"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"close": [10.5, np.inf, 11.5], "high": [11.0, np.inf, 12.2]}, "infinite price"),
        ({"low": [9.5, -np.inf, 11.0]}, "infinite price"),
        ({"adj_close": [10.4, np.inf, 11.4]}, "infinite price"),
        ({"close": [10.5, "inf", 11.5], "high": [11.0, "inf", 12.2]}, "infinite price"),
        ({"volume": [100, np.inf, 300]}, "infinite volume"),
        # 2024-07-04 is Independence Day: no NYSE session
        ({"date": ["2024-07-01", "2024-07-04", "2024-07-03"]}, "not an NYSE session"),
        # 2012-10-29: closed for Hurricane Sandy (a weekday closure, not a holiday rule)
        ({"date": ["2012-10-26", "2012-10-29", "2012-10-31"]}, "not an NYSE session"),
        ({"symbol": ["MSFT", "msft", "MSFT"]}, "invalid symbol"),
    ],
)
def test_edge_cases_are_rejected_with_reason(
    overrides: dict[str, list[object]], reason: str
) -> None:
    # GIVEN bars whose second row breaks one rule; WHEN validated
    result = validate_bars(_bars(**overrides))
    # THEN exactly that row is rejected, with the reason
    assert len(result.valid) == 2 and len(result.rejected) == 1
    assert reason in result.rejected.loc[0, "reason"]


def test_an_index_bar_on_a_holiday_is_kept_and_flagged() -> None:
    # GIVEN the same holiday bar for an index and for an equity
    dates = ["2024-07-03", "2024-07-04", "2024-07-05"]
    index = _bars(symbol=["^VIX"] * 3, date=dates)
    equity = _bars(date=dates)
    # WHEN validated together
    result = validate_bars(pd.concat([index, equity], ignore_index=True))
    # THEN the index keeps it, flagged; the equity's goes to quarantine
    assert len(result.valid[result.valid["symbol"] == "^VIX"]) == 3
    assert result.flagged[["symbol", "date"]].values.tolist() == [
        ["^VIX", pd.Timestamp("2024-07-04")]
    ]
    assert result.rejected[["symbol", "date"]].values.tolist() == [
        ["MSFT", pd.Timestamp("2024-07-04")]
    ]


def test_of_duplicate_dates_the_first_copy_is_kept() -> None:
    # GIVEN two copies of 2024-07-02 with different closes, the first 12.0
    bars = _bars(
        date=["2024-07-01", "2024-07-02", "2024-07-02"],
        close=[10.5, 12.0, 12.4],
        high=[11.0, 12.5, 12.5],
    )
    # WHEN validated
    result = validate_bars(bars)
    # THEN the first copy is kept and the second quarantined
    kept = result.valid.set_index("date")["close"]
    assert kept.loc["2024-07-02"] == 12.0
    assert result.rejected.loc[0, "close"] == 12.4
    assert "duplicate" in result.rejected.loc[0, "reason"]
