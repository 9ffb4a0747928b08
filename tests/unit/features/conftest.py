"""Real price series for the feature tests, from the data embedded in arch and pmdarima."""

from __future__ import annotations

import pandas as pd
import pytest

from utils.sample_data import sample_bars


@pytest.fixture(scope="session")
def msft_bars() -> pd.DataFrame:
    """MSFT daily bars 1986-2017 (pmdarima; split-adjusted, no dividends: adj_close = close)."""
    return sample_bars("MSFT")


@pytest.fixture(scope="session")
def market_bars() -> pd.DataFrame:
    """^GSPC and ^IXIC 1999-2018 and ^VIX 2014-2019 (close only, no volume) from arch."""
    return sample_bars("^GSPC", "^IXIC", "^VIX")
