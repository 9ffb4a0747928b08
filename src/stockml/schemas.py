"""The one bar schema every provider returns, and its validation.

A bar is one trading day of one symbol:
``symbol, date, open, high, low, close, adj_close, volume, source``.
``date`` is the exchange date (tz-naive midnight, no time of day). ``close`` is the raw
close and ``adj_close`` the split/dividend-adjusted one; both are stored, never mixed.
``open/high/low`` are on the same (raw) basis as ``close``. ``volume`` may be NaN for
indices that publish no volume (e.g. ^VIX).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from stockml.errors import ValidationError

BAR_COLUMNS: list[str] = [
    "symbol",
    "date",
    "open",
    "high",
    "low",
    "close",
    "adj_close",
    "volume",
    "source",
]
PRICE_COLUMNS: list[str] = ["open", "high", "low", "close", "adj_close"]
KEY: list[str] = ["symbol", "date"]
# relative slack for high/low checks: vendors round OHLC independently
_OHLC_RTOL = 1e-6


def empty_bars() -> pd.DataFrame:
    """An empty frame with the bar schema's columns and dtypes."""
    return coerce_bars(pd.DataFrame({c: [] for c in BAR_COLUMNS}))


def coerce_bars(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with exactly the bar columns in their canonical dtypes (a new frame).

    Columns already in their canonical dtype are taken as they are (a daily run coerces
    thousands of two-row frames: the conversions, not the data, would dominate).

    Raises:
        ValidationError: a column is missing or cannot be converted.
    """
    missing = [c for c in BAR_COLUMNS if c not in df.columns]
    if missing:
        raise ValidationError(f"bars are missing columns {missing}; got {list(df.columns)}")
    try:
        columns = {
            "symbol": _as_text(df["symbol"]),
            "date": _as_day(df["date"]),
            **{c: _as_float(df[c]) for c in [*PRICE_COLUMNS, "volume"]},
            "source": _as_text(df["source"]),
        }
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"bars cannot be converted to the bar schema: {exc}") from exc
    # text stays object (a bare object array would be inferred as pandas' str dtype)
    return pd.DataFrame(
        {
            c: pd.Series(columns[c], dtype=object, copy=True)
            if c in ("symbol", "source")
            else columns[c].copy()
            for c in BAR_COLUMNS
        }
    )


def _as_text(values: pd.Series) -> np.ndarray:
    # object array of str, missing values as pd.NA
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=False) == "string":
        return values.to_numpy()
    return values.astype("string").astype(object).to_numpy()


_NS_PER_DAY = 86_400_000_000_000


def _as_day(values: pd.Series) -> np.ndarray:
    # tz-naive datetime64[ns] at midnight (the exchange date)
    if values.dtype == "datetime64[ns]":
        array = values.to_numpy()
        if (array.view("i8") % _NS_PER_DAY == 0).all():
            return array
    dates = pd.to_datetime(values)
    if isinstance(dates.dtype, pd.DatetimeTZDtype):
        dates = dates.dt.tz_localize(None)
    return dates.dt.normalize().astype("datetime64[ns]").to_numpy()


def _as_float(values: pd.Series) -> np.ndarray:
    if values.dtype == np.float64:
        return values.to_numpy()
    return pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()


@dataclass(frozen=True)
class ValidationResult:
    """Rows that passed (``valid``) and rows that did not (``rejected``, with a ``reason``)."""

    valid: pd.DataFrame
    rejected: pd.DataFrame


def validate_bars(df: pd.DataFrame) -> ValidationResult:
    """Check bars before anything is written.

    Rules: no NaN or non-positive price, ``low <= min(open, close)``,
    ``high >= max(open, close)``, ``low <= high``, non-negative volume, no weekend date, no
    duplicate ``(symbol, date)`` (the first copy is kept). Large moves are not errors.

    Returns:
        ValidationResult: ``valid`` rows in the bar schema, sorted by (symbol, date);
        ``rejected`` rows with a ``reason`` column (several reasons joined by ``;``).
    """
    bars = coerce_bars(df)
    reasons = pd.Series([""] * len(bars), index=bars.index, dtype=object)

    def flag(mask: pd.Series | np.ndarray, reason: str) -> None:
        mask = pd.Series(mask, index=bars.index).fillna(False).astype(bool)
        reasons[mask] = reasons[mask] + (reason + ";")

    flag(bars["symbol"].isna() | (bars["symbol"].astype(str).str.len() == 0), "missing symbol")
    flag(bars["date"].isna(), "missing date")
    prices = bars[PRICE_COLUMNS]
    flag(prices.isna().any(axis=1), "NaN price")
    flag((prices <= 0).any(axis=1), "non-positive price")
    lo_oc = np.minimum(bars["open"], bars["close"])
    hi_oc = np.maximum(bars["open"], bars["close"])
    flag(bars["low"] > lo_oc * (1 + _OHLC_RTOL), "low above min(open, close)")
    flag(bars["high"] < hi_oc * (1 - _OHLC_RTOL), "high below max(open, close)")
    flag(bars["low"] > bars["high"] * (1 + _OHLC_RTOL), "low above high")
    flag(bars["volume"] < 0, "negative volume")
    flag(bars["date"].dt.day_of_week >= 5, "weekend date")
    flag(bars.duplicated(subset=KEY, keep="first"), "duplicate (symbol, date)")

    bad = reasons != ""
    valid = bars[~bad].sort_values(KEY).reset_index(drop=True)
    rejected = bars[bad].copy()
    rejected["reason"] = reasons[bad].str.rstrip(";")
    return ValidationResult(valid=valid, rejected=rejected.reset_index(drop=True))


NEWS_COLUMNS: list[str] = ["symbol", "published_at", "title", "summary", "url", "source"]


def coerce_news(df: pd.DataFrame) -> pd.DataFrame:
    """Headlines in one schema: ``published_at`` is a tz-aware UTC timestamp.

    Raises:
        ValidationError: a column is missing.
    """
    missing = [c for c in NEWS_COLUMNS if c not in df.columns]
    if missing:
        raise ValidationError(f"news is missing columns {missing}")
    out = df.loc[:, NEWS_COLUMNS].copy()
    out["published_at"] = pd.to_datetime(out["published_at"], utc=True)
    for col in ("symbol", "title", "summary", "url", "source"):
        out[col] = out[col].astype("string").fillna("").astype(object)
    return out.reset_index(drop=True)
