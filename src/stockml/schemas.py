"""The one bar schema every provider returns, and its validation.

A bar is one trading day of one symbol:
``symbol, date, open, high, low, close, adj_close, volume, source``.
``date`` is the exchange date (tz-naive midnight, no time of day). ``close`` is the raw
close and ``adj_close`` the split/dividend-adjusted one; both are stored, never mixed.
``open/high/low`` are on the same (raw) basis as ``close``. ``volume`` may be NaN for
indices that publish no volume (e.g. ^VIX). ``symbol`` matches
:data:`stockml.symbols.SYMBOL_PATTERN`; a symbol starting with ``^`` is an index.

Parsing is per row: a date or a number that cannot be parsed does not fail the frame. It
becomes NaT/NaN and its original text is kept in the extra column ``unparsed`` (a JSON
object ``{column: text}``), so :func:`validate_bars` sends the row to quarantine with that
text instead of a bare "NaN price".
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from stockml.errors import ValidationError
from stockml.symbols import is_symbol

logger = logging.getLogger(__name__)

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
#: extra column of coerced bars: the original text of the cells that could not be parsed
UNPARSED = "unparsed"
# relative slack for high/low checks: vendors round OHLC independently
_OHLC_RTOL = 1e-6
# how much of an unparsed cell a rejection reason repeats (the ``unparsed`` column has it all)
_REASON_ECHO = 40


def empty_bars() -> pd.DataFrame:
    """An empty frame with the bar schema's columns and dtypes."""
    return coerce_bars(pd.DataFrame({c: [] for c in BAR_COLUMNS}))


def is_index(symbol: str) -> bool:
    """True for an index series (Yahoo's convention: the symbol starts with ``^``)."""
    return symbol.startswith("^")


def coerce_bars(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with the bar columns in their canonical dtypes (a new frame).

    Columns already in their canonical dtype are taken as they are (a daily run coerces
    thousands of two-row frames: the conversions, not the data, would dominate). A cell
    that cannot be parsed (``"n/a"`` as a price, ``"2024-13-45"`` as a date) becomes
    NaN/NaT; the frame then carries the ``unparsed`` column with its original text (also
    when ``df`` already carried one), otherwise exactly :data:`BAR_COLUMNS`.

    Raises:
        ValidationError: a column is missing.
    """
    missing = [c for c in BAR_COLUMNS if c not in df.columns]
    if missing:
        raise ValidationError(f"bars are missing columns {missing}; got {list(df.columns)}")
    try:
        day, bad_day = _as_day(df["date"])
        floats = {c: _as_float(df[c]) for c in [*PRICE_COLUMNS, "volume"]}
        columns = {
            "symbol": _as_text(df["symbol"]),
            "date": day,
            **{c: values for c, (values, _) in floats.items()},
            "source": _as_text(df["source"]),
        }
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"bars cannot be converted to the bar schema: {exc}") from exc
    # text stays object (a bare object array would be inferred as pandas' str dtype)
    out = pd.DataFrame(
        {
            c: pd.Series(columns[c], dtype=object, copy=True)
            if c in ("symbol", "source")
            else columns[c].copy()
            for c in BAR_COLUMNS
        }
    )
    bad = {"date": bad_day, **{c: mask for c, (_, mask) in floats.items()}}
    unparsed = _unparsed(df, bad)
    if unparsed is not None:
        out[UNPARSED] = unparsed
    return out


def _unparsed(df: pd.DataFrame, bad: dict[str, np.ndarray | None]) -> np.ndarray | None:
    """Per row, the JSON ``{column: original text}`` of its unparsed cells (None: all parsed)."""
    prior = df[UNPARSED].to_numpy(dtype=object) if UNPARSED in df.columns else None
    has_prior = prior is not None and bool(pd.notna(prior).any())
    if not has_prior and all(m is None or not m.any() for m in bad.values()):
        return None
    out = np.full(len(df), None, dtype=object)
    rows = np.zeros(len(df), dtype=bool)
    for mask in bad.values():
        if mask is not None:
            rows |= mask
    if has_prior:
        rows |= pd.notna(prior)
    for i in np.flatnonzero(rows):
        cells: dict[str, str] = {}
        if has_prior and isinstance(prior[i], str):  # type: ignore[index]
            cells.update(json.loads(prior[i]))  # type: ignore[index]
        for column, mask in bad.items():
            if mask is not None and mask[i]:
                cells[column] = str(df[column].iloc[i])
        out[i] = json.dumps(cells, ensure_ascii=False) if cells else None
    return out


def _as_text(values: pd.Series) -> np.ndarray:
    # object array of str, missing values as pd.NA
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=False) == "string":
        return values.to_numpy()
    return values.astype("string").astype(object).to_numpy()


_NS_PER_DAY = 86_400_000_000_000


def _as_day(values: pd.Series) -> tuple[np.ndarray, np.ndarray | None]:
    """Tz-naive datetime64[ns] at midnight (the exchange date), and the unparseable cells.

    A stamp with an offset (``2022-01-03 00:00:00-05:00``) keeps its local date: the local
    wall-clock date is the exchange date. A file that crosses a DST change mixes offsets
    (-05:00 / -04:00), which pandas refuses to parse as one column: each value is then
    parsed alone, and one that cannot be parsed becomes NaT (its mask entry True).
    """
    if values.dtype == "datetime64[ns]":
        array = values.to_numpy()
        if (array.view("i8") % _NS_PER_DAY == 0).all():
            return array, None
    try:
        dates = pd.to_datetime(values)
    except (ValueError, TypeError, OverflowError):
        return _as_day_per_value(values)
    if isinstance(dates.dtype, pd.DatetimeTZDtype):
        dates = dates.dt.tz_localize(None)
    return dates.dt.normalize().astype("datetime64[ns]").to_numpy(), None


def _as_day_per_value(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    out = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[ns]")
    bad = np.zeros(len(values), dtype=bool)
    for i, value in enumerate(values.to_numpy(dtype=object)):
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            continue
        try:
            stamp = pd.Timestamp(value)
            if stamp is pd.NaT:
                raise ValueError(value)
            stamp = stamp.tz_localize(None) if stamp.tzinfo is not None else stamp
            out[i] = np.datetime64(stamp.normalize().as_unit("ns"))
        except (ValueError, TypeError, OverflowError):
            bad[i] = True
    return out, bad


def _as_float(values: pd.Series) -> tuple[np.ndarray, np.ndarray | None]:
    """float64 values, and the cells that held something not a number (None: none did)."""
    if values.dtype == np.float64:
        return values.to_numpy(), None
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("float64").to_numpy(), None
    numbers = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
    bad = np.isnan(numbers) & values.notna().to_numpy()
    return numbers, bad if bad.any() else None


@dataclass(frozen=True)
class ValidationResult:
    """Rows that passed (``valid``), rows that did not (``rejected``, with a ``reason``).

    ``flagged``: valid rows worth a look, with a ``note`` (an index bar on an NYSE holiday).
    """

    valid: pd.DataFrame
    rejected: pd.DataFrame
    flagged: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=[*KEY, "note"]))


def off_session(bars: pd.DataFrame) -> np.ndarray:
    """Rows dated on a weekday that was not an NYSE session (a holiday or a closure).

    Dates outside the calendar's range (before 1980, or more than about a year ahead) are
    not judged.
    """
    from stockml.calendar import sessions

    dates = pd.DatetimeIndex(bars["date"])
    known = ~dates.isna()
    if not known.any():
        return np.zeros(len(bars), dtype=bool)
    # padded so that a holiday at either end of the range lies inside the sessions found
    pad = pd.Timedelta(days=10)
    days = sessions(dates[known].min() - pad, dates[known].max() + pad)
    if len(days) == 0:
        return np.zeros(len(bars), dtype=bool)
    judged = known & (dates >= days[0]) & (dates <= days[-1]) & (dates.day_of_week < 5)
    return np.asarray(judged & ~dates.isin(days))


def validate_bars(df: pd.DataFrame) -> ValidationResult:
    """Check bars before anything is written.

    Rules: a valid symbol (:mod:`stockml.symbols`); a parseable date and numbers (the
    original text of a cell that is not is kept in the reason and in ``unparsed``); no
    NaN, infinite or non-positive price; ``low <= min(open, close)``,
    ``high >= max(open, close)``, ``low <= high``; finite, non-negative volume; no weekend
    date; no NYSE holiday for an equity (an index, ``^...``, may publish on one: the bar is
    kept and flagged); no duplicate ``(symbol, date)``: the FIRST copy in the input's order
    is kept. Large moves are not errors.

    Returns:
        ValidationResult: ``valid`` rows in the bar schema (exactly :data:`BAR_COLUMNS`),
        sorted by (symbol, date); ``rejected`` rows with ``reason`` (several joined by
        ``;``) and ``unparsed``; ``flagged`` keys with a ``note``.
    """
    bars = coerce_bars(df)
    n = len(bars)
    texts = _texts(bars)
    # (rows, reason) in the order reasons are listed; reason is one text, or one per row
    checks: list[tuple[np.ndarray, str | dict[int, str]]] = []

    def flag(mask: pd.Series | np.ndarray, reason: str) -> None:
        checks.append((np.asarray(mask, dtype=bool), reason))

    def flag_text(column: str, what: str) -> np.ndarray:
        found = {i: f"{what} {column} {_echo(c[column])}" for i, c in texts.items() if column in c}
        has = np.zeros(n, dtype=bool)
        has[list(found)] = True
        checks.append((has, found))
        return has

    symbol = bars["symbol"]
    no_symbol = (symbol.isna() | (symbol.astype(str).str.len() == 0)).to_numpy()
    flag(no_symbol, "missing symbol")
    # checked once per distinct symbol: a backfill validates millions of rows of a few
    invalid = [s for s in symbol[~no_symbol].unique() if not is_symbol(s)]
    flag(~no_symbol & symbol.isin(invalid).to_numpy(), "invalid symbol")
    date_text = flag_text("date", "unparseable")
    day = bars["date"].to_numpy()
    flag(np.isnat(day) & ~date_text, "missing date")
    prices = bars[PRICE_COLUMNS].to_numpy()
    price_text = np.zeros(n, dtype=bool)
    for col in PRICE_COLUMNS:
        price_text |= flag_text(col, "non-numeric")
    flag(np.isnan(prices).any(axis=1) & ~price_text, "NaN price")
    flag(np.isinf(prices).any(axis=1), "infinite price")
    flag((prices <= 0).any(axis=1), "non-positive price")
    open_, high, low, close = (bars[c].to_numpy() for c in ("open", "high", "low", "close"))
    flag(low > np.minimum(open_, close) * (1 + _OHLC_RTOL), "low above min(open, close)")
    flag(high < np.maximum(open_, close) * (1 - _OHLC_RTOL), "high below max(open, close)")
    flag(low > high * (1 + _OHLC_RTOL), "low above high")
    volume = bars["volume"].to_numpy()
    flag_text("volume", "non-numeric")
    flag(np.isinf(volume), "infinite volume")
    flag(volume < 0, "negative volume")
    flag((bars["date"].dt.day_of_week >= 5).to_numpy(), "weekend date")
    index = symbol.astype(str).str.startswith("^").to_numpy()
    holiday = off_session(bars)
    flag(holiday & ~index, "not an NYSE session (holiday)")
    duplicate = bars.duplicated(subset=KEY, keep="first").to_numpy()
    flag(~np.isnat(day) & duplicate, "duplicate (symbol, date)")

    bad = np.zeros(n, dtype=bool)
    for rows, _ in checks:
        bad |= rows
    valid = bars.loc[~bad, BAR_COLUMNS].sort_values(KEY, kind="stable").reset_index(drop=True)
    rejected = bars[bad].reset_index(drop=True)
    rejected["reason"] = pd.Series(
        [
            ";".join(r if isinstance(r, str) else r[i] for rows, r in checks if rows[i])
            for i in map(int, np.flatnonzero(bad))
        ],
        dtype=object,
    )
    if UNPARSED not in rejected.columns:
        rejected[UNPARSED] = pd.Series([None] * len(rejected), dtype=object)
    kept = holiday & index & ~bad
    flagged = bars.loc[kept, KEY].reset_index(drop=True)
    flagged["note"] = "index bar on an NYSE holiday (kept)"
    if len(flagged):
        logger.warning(
            "kept %d index bar(s) dated on NYSE holidays: %s",
            len(flagged),
            flagged.groupby("symbol").size().to_dict(),
        )
    return ValidationResult(valid=valid, rejected=rejected, flagged=flagged)


def _texts(bars: pd.DataFrame) -> dict[int, dict[str, str]]:
    """Row position -> ``{column: original text}``, for the rows with unparsed cells."""
    if UNPARSED not in bars.columns:
        return {}
    values = bars[UNPARSED].to_numpy(dtype=object)
    return {int(i): json.loads(values[i]) for i in np.flatnonzero(pd.notna(values))}


def _echo(text: str) -> str:
    return repr(text if len(text) <= _REASON_ECHO else text[:_REASON_ECHO] + "...")


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
