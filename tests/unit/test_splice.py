"""Splicing a re-fetched history onto the stored one (pure: no store, no provider)."""

from __future__ import annotations

import pandas as pd
import pytest

from stockml.ingest import splice_refetch
from utils.bars import make_bars

PRICES = ["open", "high", "low", "close"]


@pytest.fixture
def stored() -> pd.DataFrame:
    return make_bars("NVDA", "2024-05-01", "2024-07-05", base=1000.0)


def _split(bars: pd.DataFrame, ratio: float) -> pd.DataFrame:
    out = bars.copy()
    out[[*PRICES, "adj_close"]] /= ratio
    out["volume"] *= ratio
    return out


def test_a_shorter_split_adjusted_fetch_rescales_the_days_it_lacks(stored: pd.DataFrame) -> None:
    # GIVEN the vendor's last 5 days after a 4:1 split (one of them new)
    vendor = _split(make_bars("NVDA", "2024-05-01", "2024-07-08", base=1000.0), 4).tail(5)

    # WHEN spliced
    out = splice_refetch(stored, vendor)

    # THEN every stored day is there once, the vendor's rows where it sent them, the others
    # rescaled as the split did
    assert (out.replaced, out.kept, out.anchor_days) == (4, len(stored) - 4, 4)
    assert out.price_factor == pytest.approx(0.25) and out.adj_factor == pytest.approx(0.25)
    expected = _split(make_bars("NVDA", "2024-05-01", "2024-07-08", base=1000.0), 4)
    cols = ["date", *PRICES, "adj_close", "volume"]
    pd.testing.assert_frame_equal(
        out.bars[cols].reset_index(drop=True), expected[cols].reset_index(drop=True)
    )


def test_a_dividend_rescales_only_the_adjusted_close(stored: pd.DataFrame) -> None:
    vendor = stored.tail(3).copy()
    vendor["adj_close"] *= 0.99
    out = splice_refetch(stored, vendor)
    assert out.price_factor == 1.0 and out.adj_factor == pytest.approx(0.99)
    kept = out.bars.iloc[: out.kept]
    pd.testing.assert_frame_equal(kept[PRICES], stored.iloc[: out.kept][PRICES])
    assert (kept["adj_close"] / stored.iloc[: out.kept]["adj_close"]).round(9).eq(0.99).all()


def test_a_one_day_correction_leaves_the_other_days_as_stored(stored: pd.DataFrame) -> None:
    # the vendor corrected the last day only: the median ratio over the common days is 1
    vendor = stored.tail(5).copy()
    vendor.loc[vendor.index[-1], "close"] += 3.0
    out = splice_refetch(stored, vendor)
    assert out.price_factor == 1.0 and out.adj_factor == 1.0
    back = out.bars.set_index("date")
    assert back["close"].iloc[-1] == vendor["close"].iloc[-1]
    pd.testing.assert_series_equal(
        back["close"].iloc[:-1], stored.set_index("date")["close"].iloc[:-1]
    )


def test_without_a_common_day_the_stored_rows_are_kept_as_they_are(stored: pd.DataFrame) -> None:
    vendor = _split(make_bars("NVDA", "2024-07-08", "2024-07-09", base=1000.0), 2)
    out = splice_refetch(stored, vendor)
    assert (out.anchor_days, out.kept, out.replaced) == (0, len(stored), 0)
    assert out.price_factor == 1.0
    assert len(out.bars) == len(stored) + 2
    pd.testing.assert_frame_equal(
        out.bars.iloc[: len(stored)].reset_index(drop=True), stored.reset_index(drop=True)
    )
