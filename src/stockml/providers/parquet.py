"""Parquet price files, and ONE multi-symbol table (Parquet or CSV) holding a whole universe.

Two layouts, local or on S3:

- a folder (or ``s3://bucket/prefix``) of ``<SYMBOL>.parquet`` files, one per symbol, with the
  columns the csv provider accepts (``Date, Open, High, Low, Close, Adj Close, Volume``, any
  case and spacing);
- one file (``*.parquet``, ``*.pq`` or ``*.csv``) with those columns plus a ``symbol`` (or
  ``ticker``) column: every symbol of a universe in one table. The file is read once per
  provider, on the first fetch, and each symbol's rows are cut out of it.

Rows without a symbol cannot be attributed and are dropped (with a warning); everything else
is left to the bar schema's validation (bad rows go to quarantine, not to the store).
"""

from __future__ import annotations

import io
import logging
import re
import threading
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from stockml.errors import ProviderError, UnknownSymbolError
from stockml.providers.base import Provider, RetryPolicy
from stockml.providers.csv import yahoo_style_to_bars

logger = logging.getLogger(__name__)

#: suffixes that name one multi-symbol table file (anything else is a folder or prefix)
TABLE_SUFFIXES = (".parquet", ".pq", ".csv")
_SYMBOL_KEYS = ("symbol", "ticker")


def is_table_file(path: str | Path) -> bool:
    """True when ``path`` names one table file (local or S3) rather than a folder of files."""
    text = str(path).rstrip("/")
    if not text.lower().endswith(TABLE_SUFFIXES):
        return False
    return text.startswith("s3://") or Path(text).is_file()


def read_bytes(path: str, endpoint_url: str | None = None, region: str = "us-east-1") -> bytes:
    """The bytes of a local file or an ``s3://bucket/key`` object.

    Raises:
        UnknownSymbolError: no such file or object (the caller knows which symbol it wanted).
        ProviderError: the object store failed.
    """
    if not path.startswith("s3://"):
        local = Path(path)
        if not local.is_file():
            raise UnknownSymbolError(f"no file {local}")
        return local.read_bytes()
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = path[len("s3://") :].partition("/")
    s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
    try:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise UnknownSymbolError(f"no object {path}") from exc
        raise ProviderError(f"reading {path} failed: {exc}") from exc
    except BotoCoreError as exc:
        raise ProviderError(f"reading {path} failed: {exc}") from exc


def read_table(data: bytes, name: str) -> pd.DataFrame:
    """Parse a Parquet or CSV table (by the suffix of ``name``).

    Raises:
        ProviderError: the bytes are not a readable table of that format.
    """
    try:
        if name.lower().endswith(".csv"):
            return pd.read_csv(io.BytesIO(data))
        return pd.read_parquet(io.BytesIO(data))
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        # pyarrow's ArrowInvalid is a ValueError; a truncated file is an OSError
        raise ProviderError(f"{name} is not a readable table: {exc}") from exc


def symbol_column(frame: pd.DataFrame) -> str | None:
    """The frame's symbol column (``symbol`` or ``ticker``, any case), or None."""
    for column in frame.columns:
        if re.sub(r"[^a-z]", "", str(column).lower()) in _SYMBOL_KEYS:
            return str(column)
    return None


class UniverseTable:
    """One multi-symbol table, split by symbol once: ``rows(symbol)`` is a cheap lookup."""

    def __init__(self, frame: pd.DataFrame, name: str) -> None:
        column = symbol_column(frame)
        if column is None:
            raise ProviderError(
                f"{name} has no symbol column (symbol or ticker); got {list(frame.columns)}"
            )
        symbols = frame[column]
        unnamed = symbols.isna() | (symbols.astype("string").str.strip() == "")
        if unnamed.any():
            logger.warning("%s: %d row(s) without a symbol dropped", name, int(unnamed.sum()))
            frame = frame[~unnamed.to_numpy()]
        keys = frame[column].astype(str).str.strip().to_numpy()
        self.frame = frame.drop(columns=[column]).reset_index(drop=True)
        # one stable sort: each symbol's rows become one contiguous slice
        order = np.argsort(keys, kind="stable")
        self.frame = self.frame.iloc[order].reset_index(drop=True)
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], len(sorted_keys)]
        self._slices = {
            str(sorted_keys[lo]): (int(lo), int(hi))
            for lo, hi in zip(starts, ends, strict=True)
            if len(sorted_keys)
        }
        self.name = name

    @property
    def symbols(self) -> list[str]:
        """Every symbol of the table, sorted."""
        return sorted(self._slices)

    def rows(self, symbol: str) -> pd.DataFrame:
        """The table rows of ``symbol`` (without the symbol column).

        Raises:
            UnknownSymbolError: the table has no such symbol.
        """
        if symbol not in self._slices:
            raise UnknownSymbolError(f"{self.name} has no rows of {symbol!r}")
        lo, hi = self._slices[symbol]
        return self.frame.iloc[lo:hi]


def table_symbols(
    path: str, endpoint_url: str | None = None, region: str = "us-east-1"
) -> list[str]:
    """The symbols of one multi-symbol table file (sorted).

    Raises:
        ProviderError: unreadable file or no symbol column.
    """
    frame = read_table(read_bytes(path, endpoint_url, region), path)
    return UniverseTable(frame, path).symbols


class TableProvider(Provider):
    """Bars of many symbols from ONE table file (``symbol`` column), read once on first use."""

    def __init__(
        self,
        path: str | Path,
        name: str = "parquet",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(retry=retry)
        self.name = name
        self.path = str(path)
        self.endpoint_url = endpoint_url
        self.region = region
        self._table: UniverseTable | None = None
        # ingestion fetches symbols from a thread pool: the first callers must not all read
        self._lock = threading.Lock()

    def table(self) -> UniverseTable:
        """The parsed table (read on the first call).

        Raises:
            ProviderError: the file is missing, unreadable or has no symbol column.
        """
        with self._lock:
            if self._table is None:
                try:
                    data = read_bytes(self.path, self.endpoint_url, self.region)
                except UnknownSymbolError as exc:
                    # a missing universe file is a configuration error, not an unknown symbol
                    raise ProviderError(f"{self.name}: {exc}") from exc
                self._table = UniverseTable(read_table(data, self.path), self.path)
            return self._table

    def symbols(self) -> list[str]:
        """Every symbol of the file, sorted."""
        return self.table().symbols

    def _fetch_bars(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        return yahoo_style_to_bars(self.table().rows(symbol), symbol, self.name)


class ParquetProvider(Provider):
    """Bars from ``<root>/<SYMBOL>.parquet``; ``root`` is a folder or ``s3://bucket/prefix``.

    For one multi-symbol file use :func:`parquet_provider` (or :class:`TableProvider`).
    """

    name = "parquet"

    def __init__(
        self,
        root: str | Path,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(retry=retry)
        self.root = str(root).rstrip("/")
        self.endpoint_url = endpoint_url
        self.region = region

    def _fetch_bars(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        path = f"{self.root}/{symbol}.parquet"
        try:
            data = read_bytes(path, self.endpoint_url, self.region)
        except UnknownSymbolError as exc:
            raise UnknownSymbolError(f"parquet: {exc}") from exc
        return yahoo_style_to_bars(read_table(data, path), symbol, self.name)


def parquet_provider(
    path: str | Path,
    endpoint_url: str | None = None,
    region: str = "us-east-1",
    retry: RetryPolicy | None = None,
) -> Provider:
    """A :class:`TableProvider` when ``path`` is one table file, else a :class:`ParquetProvider`."""
    if is_table_file(path):
        return TableProvider(path, "parquet", endpoint_url, region, retry)
    return ParquetProvider(path, endpoint_url, region, retry)
