"""A symbol's latest feature window: what the prediction API serves from.

The feature pipeline computes the ``features/`` table with the shared feature library, then
writes, per symbol, its last ``FeatureConfig.serving_rows`` stored rows as ONE small object::

    <features_prefix>/_latest/symbol=<SYM>/<YYYYMMDD>.npz     (YYYYMMDD: its last date)

The API reads it with one LIST and one GET and decodes it with numpy alone: no pandas, no
Parquet in the serving Lambda (~0.5 s of its cold start). The values are the stored table's
float64 values, exactly (tested); the date in the key lets ``/symbols`` date every symbol
from one LIST.

Beside them, ONE universe-level object holds the last ``FeatureConfig.ranking_rows`` rows of
every symbol of the universe (the market series excluded)::

    <features_prefix>/_universe/latest.npz                     (UniverseWindow)

so that a ranking of the whole universe (``GET /rankings``) costs one GET and one batched
model run. Its rows are the symbols' windows' rows, exactly (tested). It is replaced in place
(a reader sees the old object or the new one, never a mix).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from stockml.errors import FeatureError
from stockml.s3 import decode_symbol, encode_symbol

LATEST_DIR = "_latest"
_KEY_RE = re.compile(r"^symbol=(?P<symbol>[^/]+)/(?P<day>\d{8})\.npz$")
_ARRAYS = ("symbol", "dates", "close", "columns", "values")
# the raw bar of each row, for charts (``/plot``): optional, a window without it still loads
BAR_FIELDS = ("open", "high", "low", "volume")


UNIVERSE_DIR = "_universe"


def universe_key(features_prefix: str) -> str:
    """Key of the universe's latest rows: ``<features_prefix>/_universe/latest.npz``."""
    return f"{features_prefix.strip('/')}/{UNIVERSE_DIR}/latest.npz"


def windows_prefix(features_prefix: str) -> str:
    """Where the windows live: ``<features_prefix>/_latest/``."""
    return f"{features_prefix.strip('/')}/{LATEST_DIR}/"


def window_key(features_prefix: str, symbol: str, last: date) -> str:
    return f"{windows_prefix(features_prefix)}symbol={encode_symbol(symbol)}/{last:%Y%m%d}.npz"


def parse_window_key(features_prefix: str, key: str) -> tuple[str, date] | None:
    """``(symbol, last date)`` of a window key; None for any other key."""
    head = windows_prefix(features_prefix)
    match = _KEY_RE.match(key[len(head) :]) if key.startswith(head) else None
    if match is None:
        return None
    day = match["day"]
    return decode_symbol(match["symbol"]), date(int(day[:4]), int(day[4:6]), int(day[6:]))


def latest_keys(features_prefix: str, keys: Sequence[str]) -> dict[str, tuple[date, str]]:
    """``{symbol: (last date, key)}`` of the newest window per symbol among ``keys``."""
    out: dict[str, tuple[date, str]] = {}
    for key in keys:
        parsed = parse_window_key(features_prefix, key)
        if parsed is not None and (parsed[0] not in out or parsed[1] > out[parsed[0]][0]):
            out[parsed[0]] = (parsed[1], key)
    return out


@dataclass(frozen=True)
class FeatureWindow:
    """One symbol's latest feature rows, oldest first.

    Attributes:
        symbol: the ticker.
        dates: ``datetime64[D]`` session dates, strictly increasing.
        close: the close of each row (forecast prices are ``close * exp(log return)``).
        columns: the feature names, in the order of ``values``' columns.
        values: float64 ``[rows, len(columns)]``.
        bars: float64 ``[rows, 4]``, the raw ``open, high, low, volume`` of each row (NaN where
            unknown), or None: charts only, never a model input.
    """

    symbol: str
    dates: np.ndarray
    close: np.ndarray
    columns: tuple[str, ...]
    values: np.ndarray
    bars: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.dates)

    @property
    def last_date(self) -> date:
        if not len(self):
            raise FeatureError(f"no feature rows for {self.symbol}")
        return self.dates[-1].astype(date)  # type: ignore[no-any-return]

    @property
    def last_close(self) -> float:
        return float(self.close[-1])

    def tail(self, rows: int) -> FeatureWindow:
        """The last ``rows`` rows (views, no copy)."""
        start = max(len(self) - rows, 0)
        return FeatureWindow(
            self.symbol,
            self.dates[start:],
            self.close[start:],
            self.columns,
            self.values[start:],
            None if self.bars is None else self.bars[start:],
        )

    def matrix(self, names: Sequence[str]) -> np.ndarray:
        """float64 ``[rows, len(names)]`` of the named features.

        Raises:
            FeatureError: a name is not among ``columns``.
        """
        index = {name: i for i, name in enumerate(self.columns)}
        missing = [n for n in names if n not in index]
        if missing:
            raise FeatureError(f"features are missing columns {missing}")
        return self.values[:, [index[n] for n in names]]

    def to_bytes(self) -> bytes:
        """``.npz`` (uncompressed: float noise does not compress, and loading stays fast)."""
        buf = io.BytesIO()
        extra = {} if self.bars is None else {"bars": np.asarray(self.bars, dtype=np.float64)}
        np.savez(
            buf,
            symbol=np.asarray(self.symbol),
            dates=np.asarray(self.dates, dtype="datetime64[D]"),
            close=np.asarray(self.close, dtype=np.float64),
            columns=np.asarray(self.columns, dtype=str),
            values=np.asarray(self.values, dtype=np.float64),
            **extra,  # type: ignore[arg-type]
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> FeatureWindow:
        """Decode and check a window written by :meth:`to_bytes`.

        Raises:
            FeatureError: not a window, inconsistent shapes, or dates not strictly increasing.
        """
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in _ARRAYS}
                bars = npz["bars"].astype(np.float64) if "bars" in npz.files else None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise FeatureError(f"feature window is unreadable: {exc}") from exc
        window = cls(
            symbol=str(arrays["symbol"]),
            dates=arrays["dates"].astype("datetime64[D]"),
            close=arrays["close"].astype(np.float64),
            columns=tuple(str(c) for c in arrays["columns"]),
            values=arrays["values"].astype(np.float64),
            bars=bars,
        )
        window.check()
        return window

    @classmethod
    def from_frame(cls, frame: Any, columns: Sequence[str]) -> FeatureWindow:
        """The window of one symbol's rows of the ``features/`` table (a pandas DataFrame).

        When ``frame`` also holds the raw bar columns (``open, high, low, volume``, e.g.
        joined from ``raw/``), the window keeps them for charts.
        """
        symbols = frame["symbol"].unique()
        if len(symbols) != 1:
            raise FeatureError(f"a feature window holds one symbol, got {list(symbols)}")
        ordered = frame.sort_values("date")
        window = cls(
            symbol=str(symbols[0]),
            dates=ordered["date"].to_numpy().astype("datetime64[D]"),
            close=ordered["close"].to_numpy(dtype=np.float64),
            columns=tuple(columns),
            values=ordered[list(columns)].to_numpy(dtype=np.float64).reshape(len(ordered), -1),
            bars=ordered[list(BAR_FIELDS)].to_numpy(dtype=np.float64)
            if all(c in ordered.columns for c in BAR_FIELDS)
            else None,
        )
        window.check()
        return window

    def check(self) -> None:
        """Raise FeatureError unless shapes agree and dates strictly increase."""
        n = len(self.dates)
        if self.dates.ndim != 1 or self.close.shape != (n,):
            raise FeatureError(f"feature window of {self.symbol}: dates and closes disagree")
        if self.values.shape != (n, len(self.columns)):
            raise FeatureError(
                f"feature window of {self.symbol}: values {self.values.shape} for {n} rows "
                f"and {len(self.columns)} columns"
            )
        if self.bars is not None and self.bars.shape != (n, len(BAR_FIELDS)):
            raise FeatureError(
                f"feature window of {self.symbol}: bars {self.bars.shape} for {n} rows"
            )
        if n > 1 and not (np.diff(self.dates) > np.timedelta64(0, "D")).all():
            raise FeatureError(
                f"feature window of {self.symbol}: dates are not strictly increasing"
            )


_UNIVERSE_ARRAYS = ("symbols", "dates", "close", "columns", "values", "lengths")


@dataclass(frozen=True)
class UniverseWindow:
    """The last ``rows`` feature rows of every symbol of a universe, stacked.

    Each symbol's rows are right-aligned: its last row is at ``rows - 1``, and a symbol with
    fewer rows has ``lengths[s] < rows`` and NaN / NaT before them.

    Attributes:
        symbols: ``[S]`` tickers, sorted.
        dates: ``datetime64[D]`` ``[S, rows]``.
        close: float64 ``[S, rows]``.
        columns: the feature names, in the order of ``values``' last axis.
        values: float64 ``[S, rows, len(columns)]``.
        lengths: ``[S]`` rows held per symbol.
    """

    symbols: tuple[str, ...]
    dates: np.ndarray
    close: np.ndarray
    columns: tuple[str, ...]
    values: np.ndarray
    lengths: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.dates.shape[1])

    def last_dates(self) -> np.ndarray:
        """``datetime64[D]`` ``[S]``: each symbol's last row's date."""
        return self.dates[:, -1]

    def window(self, symbol: str) -> FeatureWindow:
        """One symbol's rows as a :class:`FeatureWindow`.

        Raises:
            FeatureError: the universe holds no such symbol.
        """
        try:
            i = self.symbols.index(symbol)
        except ValueError:
            raise FeatureError(f"{symbol} is not in the universe window") from None
        start = self.rows - int(self.lengths[i])
        return FeatureWindow(
            symbol,
            self.dates[i, start:],
            self.close[i, start:],
            self.columns,
            self.values[i, start:],
        )

    @classmethod
    def from_windows(cls, windows: Sequence[FeatureWindow], rows: int) -> UniverseWindow:
        """The last ``rows`` rows of each window (their columns must agree).

        Raises:
            FeatureError: no window, or windows with other columns.
        """
        if not windows:
            raise FeatureError("a universe window needs at least one symbol's window")
        ordered = sorted(windows, key=lambda w: w.symbol)
        columns = ordered[0].columns
        if any(w.columns != columns for w in ordered):
            raise FeatureError("the symbols' windows hold different feature columns")
        n = len(ordered)
        dates = np.full((n, rows), np.datetime64("NaT"), dtype="datetime64[D]")
        close = np.full((n, rows), np.nan)
        values = np.full((n, rows, len(columns)), np.nan)
        lengths = np.zeros(n, dtype=np.int64)
        for i, w in enumerate(ordered):
            tail = w.tail(rows)
            k = len(tail)
            lengths[i] = k
            dates[i, rows - k :] = tail.dates
            close[i, rows - k :] = tail.close
            values[i, rows - k :] = tail.values
        return cls(tuple(w.symbol for w in ordered), dates, close, columns, values, lengths)

    def to_bytes(self) -> bytes:
        """``.npz``, uncompressed (a ranking decodes it in a few milliseconds)."""
        buf = io.BytesIO()
        np.savez(
            buf,
            symbols=np.asarray(self.symbols, dtype=str),
            dates=np.asarray(self.dates, dtype="datetime64[D]"),
            close=np.asarray(self.close, dtype=np.float64),
            columns=np.asarray(self.columns, dtype=str),
            values=np.asarray(self.values, dtype=np.float64),
            lengths=np.asarray(self.lengths, dtype=np.int64),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> UniverseWindow:
        """Decode and check an object written by :meth:`to_bytes`.

        Raises:
            FeatureError: not a universe window, or inconsistent shapes.
        """
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in _UNIVERSE_ARRAYS}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise FeatureError(f"universe window is unreadable: {exc}") from exc
        out = cls(
            symbols=tuple(str(s) for s in arrays["symbols"]),
            dates=arrays["dates"].astype("datetime64[D]"),
            close=arrays["close"].astype(np.float64),
            columns=tuple(str(c) for c in arrays["columns"]),
            values=arrays["values"].astype(np.float64),
            lengths=arrays["lengths"].astype(np.int64),
        )
        n, rows = len(out.symbols), out.dates.shape[1] if out.dates.ndim == 2 else -1
        if (
            out.dates.shape != (n, rows)
            or out.close.shape != (n, rows)
            or out.values.shape != (n, rows, len(out.columns))
            or out.lengths.shape != (n,)
            or (out.lengths > rows).any()
        ):
            raise FeatureError("universe window: inconsistent shapes")
        return out
