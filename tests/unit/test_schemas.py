"""The bar schema and its validation."""

from __future__ import annotations

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
