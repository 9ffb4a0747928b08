"""The embedded sample data (arch, pmdarima) in the bar schema, through the sample provider."""

from __future__ import annotations

from datetime import date

import pandas as pd

from stockml.providers.sample import SampleProvider

FIRST, LAST = date(1980, 1, 1), date(2020, 12, 31)


def sample_bars(*symbols: str, start: date = FIRST, end: date = LAST) -> pd.DataFrame:
    """Bars of ``symbols`` (MSFT, ^GSPC, ^IXIC, ^VIX) between ``start`` and ``end``."""
    provider = SampleProvider()
    return pd.concat([provider.fetch_bars(s, start, end) for s in symbols], ignore_index=True)
