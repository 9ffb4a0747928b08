"""A symbol's latest feature window: what the prediction API serves from.

The feature pipeline computes the ``features/`` table with the shared feature library, then
writes, per symbol, its last ``FeatureConfig.serving_rows`` stored rows as ONE small object::

    <features_prefix>/_latest/symbol=<SYM>/<YYYYMMDD>.npz     (YYYYMMDD: its last date)

The API reads it with one LIST and one GET and decodes it with numpy alone: no pandas, no
Parquet in the serving Lambda (~0.5 s of its cold start). The values are the stored table's
float64 values, exactly (tested); the date in the key lets ``/symbols`` date every symbol
from one LIST.
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
