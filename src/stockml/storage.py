"""The S3 Parquet store: partitioned tables, atomic upserts, quarantine, plain objects.

Layout (one bucket, any S3 endpoint: AWS, moto_server, LocalStack)::

    <prefix>/year=<YYYY>/symbol=<SYM>/part-<version>_<first>_<last>_<rows>_<tail>.parquet
    <prefix>/_delta/delta-<version>_<first>_<last>_<rows>.parquet
    <quarantine_prefix>/stage=<stage>/day=<YYYY-MM-DD>/<version>.parquet

``<SYM>`` is the symbol escaped as Hive escapes partition values (``^GSPC`` ->
``%5EGSPC``), so any ticker round-trips through the key. ``<version>`` is a clock-based id
that sorts after every older file it supersedes; ``<first>``/``<last>`` are the dates the
file holds and ``<tail>`` a digest of the values of its last row (see :func:`_row_digest`).
So a table's state needs LISTs and no GET. A partition rewrite touches one small
``year + symbol`` partition, never a symbol's whole history.

Year first: the daily run lists the newest year folder(s) only (:meth:`Store.list_parts`
with ``latest``), not every year of every symbol, and a read from a start date lists the
years from it on. Reading one symbol's whole history lists its folder in each year.

A (symbol, year) partition is one **base** file (``part-``) plus the **delta** rows written
after it. Deltas live in **shared** objects under ``<prefix>/_delta/``: one upsert that
appends to many symbols (a daily run: one new session of a whole batch of symbols) PUTs ONE
object, not one per symbol. A shared object's (symbol, year) groups are read from its
content (small, few, and cached by key: a key is never rewritten).

* Appending (tables keyed by ``(symbol, date)``): when every new row is dated after the
  partition's last day - except a copy of that last row whose digest equals its ``tail``
  (the overlap day of an incremental fetch, unchanged) - the new rows go into the shared
  delta object and no base is read.
* Merging (anything else: a changed or older row, other keys, or a partition that already
  has ``MAX_DELTAS`` live deltas, i.e. compaction): the upsert reads the base and its delta
  rows, merges the new rows (the new row wins per key) and PUTs the result as a NEW base
  whose version sorts after every file holding rows of the partition; only then are the
  older base files deleted.

What readers see, per partition: the newest base and the delta rows whose version is newer
than it; older files (superseded, or left over by a crash) are ignored. A delta only ever
holds days after everything written before it, so base + live deltas hold each row once. A
shared object is deleted once every partition it holds rows of has a newer base. A base of
0 rows is a tombstone: :meth:`Store.replace_bars` writes one to hide a dropped year's delta
rows that share an object with other symbols.

Crash safety (write new, then swap; never delete first; a single S3 PUT is atomic and
listings are strongly consistent): a run that dies before a PUT completes leaves the store
as it was. One that dies after a merge's PUT but before the deletes leaves older files
behind, all older than the new base, so readers still see every row once, the new values
winning; a later write deletes them. An append has no step after its PUT.

Limits: one writer per symbol at a time (the ingestion fan-out gives each symbol to exactly
one batch); two concurrent writers to one partition would make the last PUT win. Writers of
different symbols may share nothing but the ``_delta/`` folder, where each PUTs its own
objects.

S3 I/O goes through a per-Store boto3 client (no process-wide endpoint setting, so two
stores on two endpoints never leak into each other) and one thread pool per Store; the
Parquet (de)serialisation is pyarrow's.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date
from functools import lru_cache, partial
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stockml.errors import StoreError
from stockml.s3 import decode_symbol, encode_symbol
from stockml.schemas import KEY, coerce_bars, empty_bars, validate_bars
from stockml.settings import StoreSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

_in_pool = threading.local()


def _mark_pool_thread() -> None:
    _in_pool.flag = True


# <kind>-<20-digit ns version>-<8 hex>_<first YYYYMMDD>_<last YYYYMMDD>_<rows>[_<tail>].parquet
_PART_RE = re.compile(
    r"^(?P<kind>part|delta)-(?P<version>\d{20}-[0-9a-f]{8})_(?P<first>\d{8})_(?P<last>\d{8})"
    r"_(?P<rows>\d+)(?:_(?P<tail>[0-9a-f]{16}))?\.parquet$"
)
# <prefix>/_delta/delta-<version>_<first>_<last>_<rows>.parquet: one daily append of many
# symbols; which (symbol, year) it holds, and their last rows, come from its content
_SHARED_RE = re.compile(
    r"^delta-(?P<version>\d{20}-[0-9a-f]{8})_(?P<first>\d{8})_(?P<last>\d{8})_(?P<rows>\d+)"
    r"\.parquet$"
)
_SHARED_DIR = "_delta"
_DEFAULT_WORKERS = 16
# a partition with this many live deltas is compacted by its next upsert
MAX_DELTAS = 8
# up to this many symbols (or year x symbol folders), list their folders, not the table
_FEW_SYMBOLS = 20
_FEW_FOLDERS = 64
_SHARED_CACHE = 256


@dataclass(frozen=True)
class PartFile:
    """One data file of a partition, as its object name describes it."""

    key: str
    symbol: str
    year: int
    version: str
    first: pd.Timestamp
    last: pd.Timestamp
    rows: int
    delta: bool = False
    tail: str | None = None
    # the rows of (symbol, year) inside a shared delta object (``<prefix>/_delta/``)
    shared: bool = False


class Listing(list[PartFile]):
    """Data files from one listing of a table.

    ``since_year``: None when every year was listed; else only years >= it were (rows of
    older years need another listing before they are written).
    """

    def __init__(self, parts: Iterable[PartFile] = (), since_year: int | None = None) -> None:
        super().__init__(parts)
        self.since_year = since_year


@dataclass(frozen=True)
class _Partition:
    """The files of one (symbol, year) partition and which of them readers see."""

    base: PartFile | None
    deltas: tuple[PartFile, ...]  # live deltas (newer than the base), oldest first
    files: tuple[PartFile, ...]  # every file, live or superseded

    @property
    def live(self) -> list[PartFile]:
        # a base of 0 rows is a tombstone (see Store.replace_bars): it only hides older deltas
        base = [self.base] if self.base is not None and self.base.rows else []
        return base + list(self.deltas)

    @property
    def version(self) -> str:
        return max(p.version for p in self.files)

    @property
    def first(self) -> pd.Timestamp:
        return min(p.first for p in self.live)

    @property
    def last(self) -> pd.Timestamp:
        return max(p.last for p in self.live)

    @property
    def rows(self) -> int:
        # deltas only ever hold days after everything before them: no overlap to subtract
        return sum(p.rows for p in self.live)

    @property
    def tail(self) -> str | None:
        """The digest of the partition's last row (None when unknown)."""
        return max(self.live, key=lambda p: (p.last, p.version)).tail


@dataclass(frozen=True)
class UpsertReport:
    """What one upsert did.

    Attributes:
        rows_valid: rows that passed validation and were offered to the store.
        rows_new: of those, keys the store did not hold before.
        rows_changed: keys the store held with different values (now replaced).
        rows_quarantined: rows rejected by validation and written to quarantine.
        partitions_written: partitions rewritten (0 when nothing changed).
        new_by_symbol / changed_by_symbol / quarantined_by_symbol: the counts per symbol.
        mismatched: symbols left untouched because a row expected unchanged differed.
    """

    rows_valid: int = 0
    rows_new: int = 0
    rows_changed: int = 0
    rows_quarantined: int = 0
    partitions_written: int = 0
    new_by_symbol: dict[str, int] = field(default_factory=dict)
    changed_by_symbol: dict[str, int] = field(default_factory=dict)
    quarantined_by_symbol: dict[str, int] = field(default_factory=dict)
    mismatched: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Merged:
    """One partition after merging: the frame to write (None = unchanged) and its counts."""

    symbol: str
    year: int
    frame: pd.DataFrame | None
    new: int
    changed: int
    mismatch: bool
    delta: bool = False


@lru_cache(maxsize=4096)
def _day(yyyymmdd: str) -> pd.Timestamp:
    # the same few hundred dates recur across thousands of object names in one LIST
    return pd.Timestamp(yyyymmdd)


def _new_version(after: str | None = None) -> str:
    # ns clock + random suffix; bumped past ``after`` so a slow clock can never make a new
    # file sort before the one it replaces
    now = time.time_ns()
    if after is not None:
        now = max(now, int(after.split("-")[0]) + 1)
    return f"{now:020d}-{uuid.uuid4().hex[:8]}"


def _to_parquet(df: pd.DataFrame) -> bytes:
    # tz-aware columns go through as naive UTC and are re-tagged in Arrow: pyarrow's own
    # conversion calls a deprecated pandas path (Pandas4Warning)
    aware = [c for c in df.columns if isinstance(df[c].dtype, pd.DatetimeTZDtype)]
    plain = df.copy() if aware else df
    for column in aware:
        plain[column] = df[column].dt.tz_convert("UTC").dt.tz_localize(None)
    table = pa.Table.from_pandas(plain, preserve_index=False)
    for column in aware:
        index = table.schema.get_field_index(column)
        unit = table.schema.field(index).type.unit
        table = table.set_column(index, column, table[column].cast(pa.timestamp(unit, tz="UTC")))
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _from_parquet(data: bytes) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(data)).to_pandas()


def _naive_day(values: pd.Series) -> pd.Series:
    """Timestamps as tz-naive days (UTC days for tz-aware ones, e.g. news ``published_at``)."""
    values = pd.to_datetime(values)
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values.dt.normalize()


def _key_hash(df: pd.DataFrame, key: Sequence[str]) -> np.ndarray:
    """One uint64 per row for the key columns, equal across dtype variants of the same values.

    Parquet round trips change dtypes (object -> str, ns -> us): normalise before hashing.
    """
    parts = {}
    for column in key:
        values = df[column]
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        if pd.api.types.is_datetime64_any_dtype(values.dtype):
            parts[column] = values.astype("datetime64[ns]").astype("int64")
        else:
            parts[column] = values.astype(str).astype(object)
    return pd.util.hash_pandas_object(pd.DataFrame(parts), index=False).to_numpy()


def _digest_value(value: object) -> str:
    if (
        value is None
        or value is pd.NaT
        or (isinstance(value, float) and np.isnan(value))
        or (isinstance(value, np.datetime64) and np.isnat(value))
    ):
        return "~"
    if isinstance(value, (int, np.integer)) and abs(int(value)) > 2**53:
        return str(int(value))  # beyond float precision: exact, never a false "equal"
    if isinstance(value, (bool, np.bool_, int, float, np.integer, np.floating)):
        return float(value).hex()
    if isinstance(value, (pd.Timestamp, np.datetime64, date)):
        return str(pd.Timestamp(value).value)
    return repr(str(value))


def _row_digest(df: pd.DataFrame, position: int, key: Sequence[str]) -> str:
    """16 hex digits identifying the non-key values of one row (dtype-independent).

    Two rows with equal digests hold equal values in the sense of :meth:`Store.upsert_table`
    (``==``, NaN equal to NaN), so the last row of a partition can be compared with a new
    copy of it from the object name alone.
    """
    return _row_digests(df, [position], key)[0]


def _row_digests(df: pd.DataFrame, positions: Iterable[int], key: Sequence[str]) -> list[str]:
    """:func:`_row_digest` of several rows (the columns are converted once)."""
    columns = [c for c in sorted(df.columns) if c not in key]
    arrays = [(c, df[c].to_numpy()) for c in columns]
    return [
        hashlib.blake2b(
            "|".join(f"{c}={_digest_value(values[i])}" for c, values in arrays).encode(),
            digest_size=8,
        ).hexdigest()
        for i in positions
    ]


def _rows_after(current: _Partition, rows: pd.DataFrame, key: Sequence[str]) -> pd.DataFrame | None:
    """The rows to append as a delta, or None when the partition must be merged instead.

    Appending is right when every row is dated after the partition's last day, except a copy
    of that last day's row whose digest equals the one in the object name (the overlap day
    of an incremental fetch, unchanged).
    """
    days = _naive_day(rows["date"]).to_numpy()
    last = current.last.to_datetime64()
    if (days < last).any():
        return None
    at_last = np.flatnonzero(days == last)
    if len(at_last):
        if current.tail is None or _row_digest(rows, int(at_last[0]), key) != current.tail:
            return None
        return rows[days > last]
    return rows


def _readable(state: dict[tuple[str, int], _Partition]) -> dict[tuple[str, int], _Partition]:
    """The partitions holding rows (not only a tombstone)."""
    return {slot: p for slot, p in state.items() if p.live}


def _date_column(df: pd.DataFrame) -> str:
    for name in ("date", "published_at"):
        if name in df.columns:
            return name
    raise StoreError(f"a table needs a 'date' or 'published_at' column; got {list(df.columns)}")


class Store:
    """Tables and objects in one S3 bucket; see the module docstring for the layout."""

    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        raw_prefix: str = "raw",
        features_prefix: str = "features",
        quarantine_prefix: str = "quarantine",
        models_prefix: str = "models",
        news_prefix: str = "news",
        max_workers: int = _DEFAULT_WORKERS,
    ) -> None:
        import botocore.session
        from botocore.config import Config

        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        self.raw_prefix = raw_prefix.strip("/")
        self.features_prefix = features_prefix.strip("/")
        self.quarantine_prefix = quarantine_prefix.strip("/")
        self.models_prefix = models_prefix.strip("/")
        self.news_prefix = news_prefix.strip("/")
        self.max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        # shared delta objects by key: a key is written once and never rewritten, so a cached
        # copy is never stale
        self._shared_frames: dict[str, pd.DataFrame] = {}
        # shared delta key -> its PartFiles, and the row positions of each (symbol, year)
        self._shared_index: dict[str, tuple[list[PartFile], dict[tuple[str, int], np.ndarray]]] = {}
        # botocore, not boto3: the same client without boto3's and s3transfer's imports
        # (a Lambda cold start pays for every import)
        session = botocore.session.get_session()
        # LIST answers carry a LastModified per key that nobody here reads; botocore's
        # dateutil parsing of it costs more than the request on a 10,000-key prefix
        session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
        self._s3 = session.create_client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(
                max_pool_connections=max_workers + 4,
                retries={"max_attempts": 5, "mode": "standard"},
            ),
        )

    @classmethod
    def from_settings(cls, settings: StoreSettings, max_workers: int = _DEFAULT_WORKERS) -> Store:
        """A Store for ``settings`` (bucket, endpoint, region, prefixes)."""
        return cls(
            bucket=settings.bucket,
            endpoint_url=settings.endpoint_url,
            region=settings.region,
            raw_prefix=settings.raw_prefix,
            features_prefix=settings.features_prefix,
            quarantine_prefix=settings.quarantine_prefix,
            models_prefix=settings.models_prefix,
            news_prefix=settings.news_prefix,
            max_workers=max_workers,
        )

    def __repr__(self) -> str:
        return f"Store(bucket={self.bucket!r}, endpoint_url={self.endpoint_url!r})"

    # ------------------------------------------------------------------ objects

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write one object (atomic: readers see the old or the new object, never a part)."""
        self._call(
            lambda: self._s3.put_object(Bucket=self.bucket, Key=key, Body=data), f"put {key}"
        )

    def get_bytes(self, key: str) -> bytes:
        """Read one object.

        Raises:
            StoreError: the object does not exist or the read failed.
        """
        body = self._call(lambda: self._s3.get_object(Bucket=self.bucket, Key=key), f"get {key}")
        return bytes(body["Body"].read())

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (all pages), sorted."""
        keys: list[str] = []

        def run() -> None:
            paginator = self._s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(obj["Key"] for obj in page.get("Contents", []))

        self._call(run, f"list {prefix}")
        return sorted(keys)

    def list_folders(self, prefix: str) -> list[str]:
        """The "folders" right under ``prefix`` (common prefixes ending in ``/``), sorted."""
        folders: list[str] = []

        def run() -> None:
            paginator = self._s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                folders.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))

        self._call(run, f"list folders {prefix}")
        return sorted(folders)

    def put_folder(self, local_dir: str | Path, prefix: str) -> list[str]:
        """Upload every file under ``local_dir`` to ``prefix/<relative path>``; returns the keys."""
        root = Path(local_dir)
        files = sorted(p for p in root.rglob("*") if p.is_file())
        keys = [f"{prefix.rstrip('/')}/{p.relative_to(root).as_posix()}" for p in files]
        self._map(
            lambda pair: self.put_bytes(pair[0], pair[1].read_bytes()),
            list(zip(keys, files, strict=True)),
        )
        return keys

    def get_folder(self, prefix: str) -> dict[str, bytes]:
        """Every object under ``prefix/`` as ``{path relative to prefix: bytes}``."""
        base = prefix.rstrip("/") + "/"
        keys = self.list_keys(base)
        blobs = self._map(self.get_bytes, keys)
        return {key[len(base) :]: blob for key, blob in zip(keys, blobs, strict=True)}

    # ------------------------------------------------------------------ tables

    def read_bars(
        self,
        symbols: Sequence[str] | None = None,
        start: date | str | pd.Timestamp | None = None,
        end: date | str | pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Stored raw bars, in the bar schema, sorted by (symbol, date).

        Args:
            symbols: only these symbols (default: all).
            start: first date, inclusive (default: the beginning).
            end: last date, inclusive (default: the end).
        """
        frame = self.read_table(self.raw_prefix, symbols, start, end)
        if frame.empty:
            return empty_bars()
        return coerce_bars(frame).sort_values(KEY).reset_index(drop=True)

    def upsert_bars(
        self,
        df: pd.DataFrame,
        expect_unchanged: Iterable[tuple[object, ...]] = (),
        parts: Listing | None = None,
    ) -> UpsertReport:
        """Validate bars, quarantine the bad rows, upsert the good ones by (symbol, date).

        Args:
            df: bars of one or more symbols.
            expect_unchanged: ``(symbol, date)`` keys that must match what is stored; see
                :meth:`upsert_table`.
            parts: the raw table's current files from :meth:`list_parts` (default: list).

        Returns:
            UpsertReport: counts of valid, new, changed and quarantined rows (also per symbol).
        """
        checked = validate_bars(df)
        if len(checked.rejected):
            self.write_quarantine(checked.rejected, stage=self.raw_prefix)
        report = self.upsert_table(
            self.raw_prefix, checked.valid, expect_unchanged=expect_unchanged, parts=parts
        )
        quarantined = checked.rejected.groupby(checked.rejected["symbol"].astype(str)).size()
        return replace(
            report,
            rows_quarantined=len(checked.rejected),
            quarantined_by_symbol={str(k): int(v) for k, v in quarantined.items()},
        )

    def replace_bars(self, symbol: str, df: pd.DataFrame) -> UpsertReport:
        """Replace ALL stored bars of ``symbol`` by ``df`` (e.g. history re-adjusted after a split).

        New files are written first; only then are the symbol's older files deleted, so a crash
        leaves either the old or the new history readable. Bad rows go to quarantine.
        """
        checked = validate_bars(df)
        if len(checked.rejected):
            self.write_quarantine(checked.rejected, stage=self.raw_prefix)
        valid = checked.valid[checked.valid["symbol"] == symbol]
        if len(valid) != len(checked.valid):
            raise StoreError(f"replace_bars({symbol!r}) got rows of other symbols")
        old = self._parts(self.raw_prefix, [symbol])
        state = self._partitions(old)
        old_rows = sum(p.rows for p in state.values())
        groups = [
            ((symbol, int(year)), rows, False)
            for year, rows in valid.groupby(valid["date"].dt.year, sort=True)
        ]
        # a year the new history lacks loses its files; rows of it in a shared delta object
        # (which holds other symbols too) are hidden by an empty base, a tombstone
        years = {slot[1] for slot, _, _ in groups}
        groups += [
            (slot, valid.iloc[:0], False)
            for slot, p in state.items()
            if slot[1] not in years and any(f.shared for f in p.files)
        ]
        written = self._write_partitions(
            self.raw_prefix, groups, "date", state, superseded=old, drop_untouched=True
        )
        return UpsertReport(
            rows_valid=len(valid),
            rows_new=max(len(valid) - old_rows, 0),
            rows_changed=min(len(valid), old_rows),
            rows_quarantined=len(checked.rejected),
            partitions_written=written,
        )

    def last_dates(
        self,
        prefix: str | None = None,
        symbols: Sequence[str] | None = None,
        parts: Listing | None = None,
    ) -> dict[str, pd.Timestamp]:
        """The last stored date per symbol under ``prefix`` (default raw), from LISTs only.

        Args:
            prefix: the table (default: raw bars).
            symbols: only these; default: every symbol.
            parts: a listing already made with :meth:`list_parts` (then nothing is listed).
        """
        if parts is None:
            parts = self.list_parts(prefix, symbols, latest=True)
        out: dict[str, pd.Timestamp] = {}
        for (symbol, _), part in _readable(self._partitions(parts)).items():
            if symbol not in out or part.last > out[symbol]:
                out[symbol] = part.last
        return out

    def list_parts(
        self,
        prefix: str | None = None,
        symbols: Sequence[str] | None = None,
        latest: bool = False,
    ) -> Listing:
        """The data files of a table (default raw), optionally of some symbols only.

        A caller that lists once can hand the result to :meth:`last_dates` and
        :meth:`upsert_bars` so that a daily run LISTs the bucket only once.

        Args:
            prefix: the table (default: raw bars).
            symbols: only these; default: every symbol.
            latest: list only the newest year folders, down to the first year by which every
                one of ``symbols`` has rows (a daily run lists this year, not the history).
                An upsert given such a listing lists again for rows older than that.
        """
        return self._parts(prefix or self.raw_prefix, symbols, latest=latest and bool(symbols))

    def summary(self, prefix: str | None = None) -> pd.DataFrame:
        """Per symbol: ``rows, first, last, partitions`` under ``prefix`` (default raw), one LIST."""
        state = _readable(self._partitions(self._parts(prefix or self.raw_prefix)))
        rows = [
            {"symbol": symbol, "rows": p.rows, "first": p.first, "last": p.last}
            for (symbol, _), p in state.items()
        ]
        if not rows:
            return pd.DataFrame(columns=["symbol", "rows", "first", "last", "partitions"])
        frame = pd.DataFrame(rows)
        out = frame.groupby("symbol").agg(
            rows=("rows", "sum"),
            first=("first", "min"),
            last=("last", "max"),
            partitions=("rows", "size"),
        )
        return out.reset_index()

    def read_table(
        self,
        prefix: str,
        symbols: Sequence[str] | None = None,
        start: date | str | pd.Timestamp | None = None,
        end: date | str | pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Rows of a partitioned table (raw/, features/, news/ ...), sorted by symbol and date.

        Only the live files (base and deltas) of partitions whose dates overlap
        ``[start, end]`` are read; rows are then cut to the range on the table's ``date`` (or
        ``published_at``, by UTC day) column.
        """
        lo = None if start is None else pd.Timestamp(start).normalize()
        hi = None if end is None else pd.Timestamp(end).normalize()
        state = _readable(
            self._partitions(self._parts(prefix, symbols, since_year=lo.year if lo else None))
        )
        wanted = [
            f
            for p in state.values()
            if (lo is None or p.last >= lo) and (hi is None or p.first <= hi)
            for f in p.live
        ]
        if not wanted:
            return pd.DataFrame()
        frames = self._map(self._read_part, wanted)
        frame = pd.concat(frames, ignore_index=True)
        column = _date_column(frame)
        day = _naive_day(frame[column])
        mask = pd.Series(True, index=frame.index)
        if lo is not None:
            mask &= day >= lo
        if hi is not None:
            mask &= day <= hi
        return frame[mask].sort_values(["symbol", column]).reset_index(drop=True)

    def upsert_table(
        self,
        prefix: str,
        df: pd.DataFrame,
        key: Sequence[str] = ("symbol", "date"),
        expect_unchanged: Iterable[tuple[object, ...]] = (),
        parts: Listing | None = None,
    ) -> UpsertReport:
        """Insert or replace rows by ``key`` in ``prefix``, partitioned by symbol and year.

        The year comes from the ``date`` column (``published_at`` for news). Partitions whose
        merged content equals what is stored are not rewritten, so a re-run writes nothing.

        Args:
            prefix: the table.
            df: rows to upsert (a later duplicate of a key wins).
            key: the columns identifying a row.
            expect_unchanged: keys whose stored values must equal the new ones (e.g. the
                overlap day of an incremental fetch). When one differs, NOTHING of that
                symbol is written and the symbol is listed in ``UpsertReport.mismatched``.

        Raises:
            StoreError: the frame lacks the key or date columns, or S3 failed.
        """
        if df.empty:
            return UpsertReport()
        key = list(key)
        missing = [c for c in key if c not in df.columns]
        if missing:
            raise StoreError(f"upsert into {prefix!r}: missing key columns {missing}")
        column = _date_column(df)
        frozen = set(expect_unchanged)
        new = df.drop_duplicates(subset=key, keep="last").reset_index(drop=True)
        symbols = sorted(new["symbol"].astype(str).unique())
        days = _naive_day(new[column])
        if parts is None:
            existing: list[PartFile] = self._parts(prefix, symbols)
        else:  # a listing of more symbols (a whole ingestion run): only these matter here
            wanted = set(symbols)
            existing = [p for p in parts if p.symbol in wanted]
            since = getattr(parts, "since_year", None)
            older = set() if since is None else set(new["symbol"][days.dt.year < since])
            if older:  # rows of years the listing did not cover
                existing = [p for p in existing if p.symbol not in older]
                existing += self._parts(prefix, sorted(map(str, older)))
        state = self._partitions(existing)
        # deltas need "a later day is a new row": only for tables keyed by (symbol, date)
        appendable = key == ["symbol", "date"] and column == "date"
        groups = [
            ((str(symbol), int(year)), rows)
            for (symbol, year), rows in new.groupby(
                [new["symbol"].astype(str), days.dt.year], sort=False
            )
        ]

        def merge(item: tuple[tuple[str, int], pd.DataFrame]) -> _Merged:
            (symbol, year), rows = item
            current = state.get((symbol, year))
            if current is None or not current.live:
                return _Merged(symbol, year, rows, len(rows), 0, False)
            after = _rows_after(current, rows, key) if appendable else None
            if after is not None and len(current.deltas) < MAX_DELTAS:
                # no GET: only days after the partition's last one, whose stored row
                # the object name proves unchanged
                frame = after if len(after) else None
                return _Merged(symbol, year, frame, len(after), 0, False, delta=True)
            old = self._read_files(current.live)
            if after is not None and len(after):  # compaction: new days follow the stored ones
                merged = pd.concat([old, after], ignore_index=True)
                return _Merged(symbol, year, merged, len(after), 0, False)
            # vectorised key matching: the merge runs once per partition of a daily run
            old_keys, new_keys = _key_hash(old, key), _key_hash(rows, key)
            stored = np.isin(new_keys, old_keys)
            differs: list[tuple[object, ...]] = []
            if stored.any():
                fresh = rows[stored]
                prior = old.iloc[pd.Index(old_keys).get_indexer(new_keys[stored])]
                same = np.ones(len(fresh), dtype=bool)
                for c in (c for c in fresh.columns if c in old.columns and c not in key):
                    a, b = prior[c].to_numpy(), fresh[c].to_numpy()
                    same &= (a == b) | (pd.isna(a) & pd.isna(b))
                differs = list(fresh.loc[~same, key].itertuples(index=False, name=None))
            n_new = int((~stored).sum())
            if n_new == 0 and not differs:
                return _Merged(symbol, year, None, 0, 0, False)
            keep = old[~np.isin(old_keys, new_keys)]
            merged = pd.concat([keep, rows], ignore_index=True)
            mismatch = bool(frozen.intersection(differs))
            return _Merged(symbol, year, merged, n_new, len(differs), mismatch)

        merged = self._map(merge, groups)
        mismatched = frozenset(m.symbol for m in merged if m.mismatch)
        if mismatched:
            logger.warning(
                "not upserting %s: stored rows expected unchanged differ", sorted(mismatched)
            )
        kept = [m for m in merged if m.symbol not in mismatched]
        written = self._write_partitions(
            prefix,
            [((m.symbol, m.year), m.frame, m.delta) for m in kept if m.frame is not None],
            column,
            state,
            superseded=existing,
        )
        new_by: dict[str, int] = defaultdict(int)
        changed_by: dict[str, int] = defaultdict(int)
        for m in kept:
            new_by[m.symbol] += m.new
            changed_by[m.symbol] += m.changed
        return UpsertReport(
            rows_valid=int(sum(len(rows) for (s, _), rows in groups if s not in mismatched)),
            rows_new=sum(new_by.values()),
            rows_changed=sum(changed_by.values()),
            partitions_written=written,
            new_by_symbol=dict(new_by),
            changed_by_symbol=dict(changed_by),
            mismatched=mismatched,
        )

    def write_quarantine(self, rejected: pd.DataFrame, stage: str) -> str | None:
        """Write rejected rows (with their ``reason``) and the time of rejection to quarantine.

        Returns:
            The key written, or None when there was nothing to write.
        """
        if rejected.empty:
            return None
        now = pd.Timestamp.now(tz="UTC")
        frame = rejected.copy()
        if "reason" not in frame.columns:
            raise StoreError("quarantined rows need a 'reason' column")
        frame["stage"] = stage
        frame["quarantined_at"] = now
        key = (
            f"{self.quarantine_prefix}/stage={encode_symbol(stage)}/day={now:%Y-%m-%d}/"
            f"{_new_version()}.parquet"
        )
        self.put_bytes(key, _to_parquet(frame))
        logger.warning("quarantined %d row(s) at stage %s: %s", len(frame), stage, key)
        return key

    def read_quarantine(self, stage: str | None = None) -> pd.DataFrame:
        """Every quarantined row (optionally of one stage), oldest first."""
        prefix = f"{self.quarantine_prefix}/"
        if stage is not None:
            prefix += f"stage={encode_symbol(stage)}/"
        keys = [k for k in self.list_keys(prefix) if k.endswith(".parquet")]
        if not keys:
            return pd.DataFrame()
        frames = self._map(lambda k: _from_parquet(self.get_bytes(k)), keys)
        return (
            pd.concat(frames, ignore_index=True)
            .sort_values("quarantined_at")
            .reset_index(drop=True)
        )

    # ------------------------------------------------------------------ internals

    def _parts(
        self,
        prefix: str,
        symbols: Iterable[str] | None = None,
        since_year: int | None = None,
        latest: bool = False,
    ) -> Listing:
        """The data files of a table: of ``symbols`` (default all), of years >= ``since_year``.

        ``latest=True`` lists year folders from the newest down and stops at the first year by
        which every symbol has live rows: a daily run lists this year, not the history.
        """
        wanted = None if symbols is None else set(symbols)
        shared = [
            p
            for key_parts in self._map(
                self._shared_parts, self.list_keys(f"{prefix}/{_SHARED_DIR}/")
            )
            for p in key_parts
            if wanted is None or p.symbol in wanted
        ]
        if since_year is None and not latest and (wanted is None or len(wanted) > _FEW_SYMBOLS):
            # one paginated LIST (1000 keys a page) beats one LIST per folder
            return Listing(shared + self._parse_keys(prefix, self.list_keys(f"{prefix}/"), wanted))
        years = [y for y in self._years(prefix) if since_year is None or y >= since_year]
        if not latest or wanted is None:
            return Listing(shared + self._list_years(prefix, years, wanted), since_year)
        parts = list(shared)
        for i, year in enumerate(sorted(years, reverse=True)):
            parts += self._list_years(prefix, [year], wanted)
            # every year >= ``year`` is listed: their partitions' states are complete
            done = {s for (s, y) in _readable(self._partitions(parts)) if y >= year}
            if wanted <= done:
                return Listing(parts, year if i + 1 < len(years) else since_year)
        return Listing(parts, since_year)

    def _years(self, prefix: str) -> list[int]:
        """The year folders of a table (one LIST of folders, not of files)."""
        folders = self.list_folders(f"{prefix}/")
        head = f"{prefix}/year="
        return sorted(int(f[len(head) : -1]) for f in folders if f.startswith(head))

    def _list_years(
        self, prefix: str, years: Sequence[int], wanted: set[str] | None
    ) -> list[PartFile]:
        if (
            wanted is not None
            and len(wanted) <= _FEW_SYMBOLS
            and len(wanted) * len(years) <= _FEW_FOLDERS
        ):
            prefixes = [
                f"{prefix}/year={y}/symbol={encode_symbol(s)}/"
                for y in years
                for s in sorted(wanted)
            ]
        else:
            prefixes = [f"{prefix}/year={y}/" for y in years]
        keys = [k for listed in self._map(self.list_keys, prefixes) for k in listed]
        return self._parse_keys(prefix, keys, wanted)

    def _parse_keys(
        self, prefix: str, keys: Iterable[str], wanted: set[str] | None
    ) -> list[PartFile]:
        parsed = (self._parse(prefix, key) for key in keys)
        return [p for p in parsed if p is not None and (wanted is None or p.symbol in wanted)]

    def _shared_frame(self, key: str) -> pd.DataFrame:
        frame = self._shared_frames.get(key)
        if frame is None:
            frame = _from_parquet(self.get_bytes(key))
            if len(self._shared_frames) >= _SHARED_CACHE:
                self._shared_frames.clear()
                self._shared_index.clear()
            self._shared_frames[key] = frame
        return frame

    def _shared_parts(self, key: str) -> list[PartFile]:
        """One PartFile per (symbol, year) held by the shared delta object ``key``."""
        cached = self._shared_index.get(key)
        if cached is not None:
            return cached[0]
        match = _SHARED_RE.match(key.rsplit("/", 1)[-1])
        if match is None:
            return []
        frame = self._shared_frame(key)
        column = _date_column(frame)
        day = _naive_day(frame[column])
        # (symbol, day) order: each (symbol, year) group is a run whose last row is its tail
        order = np.lexsort((day.to_numpy(), frame["symbol"].astype(str).to_numpy()))
        groups = frame.iloc[order].groupby(
            [frame["symbol"].astype(str).to_numpy()[order], day.dt.year.to_numpy()[order]],
            sort=False,
        )
        runs = {slot: order[positions] for slot, positions in groups.indices.items()}
        tails = (
            _row_digests(frame, [int(p[-1]) for p in runs.values()], ("symbol", "date"))
            if column == "date"
            else [None] * len(runs)
        )
        out = [
            PartFile(
                key=key,
                symbol=str(symbol),
                year=int(year),
                version=match["version"],
                first=day.iloc[positions[0]],
                last=day.iloc[positions[-1]],
                rows=len(positions),
                delta=True,
                tail=tail,
                shared=True,
            )
            for ((symbol, year), positions), tail in zip(runs.items(), tails, strict=True)
        ]
        self._shared_index[key] = (out, runs)
        return out

    def _read_part(self, part: PartFile) -> pd.DataFrame:
        """The rows of one data file; of a shared delta, the rows of the part's (symbol, year)."""
        if not part.shared:
            return _from_parquet(self.get_bytes(part.key))
        self._shared_parts(part.key)
        positions = self._shared_index[part.key][1][(part.symbol, part.year)]
        return self._shared_frame(part.key).iloc[positions].reset_index(drop=True)

    @staticmethod
    def _parse(prefix: str, key: str) -> PartFile | None:
        pieces = key[len(prefix) + 1 :].split("/")
        if (
            len(pieces) != 3
            or not pieces[0].startswith("year=")
            or not pieces[1].startswith("symbol=")
        ):
            return None
        match = _PART_RE.match(pieces[2])
        if match is None:
            return None
        return PartFile(
            key=key,
            symbol=decode_symbol(pieces[1][len("symbol=") :]),
            year=int(pieces[0][len("year=") :]),
            version=match["version"],
            first=_day(match["first"]),
            last=_day(match["last"]),
            rows=int(match["rows"]),
            delta=match["kind"] == "delta",
            tail=match["tail"],
        )

    @staticmethod
    def _partitions(parts: Iterable[PartFile]) -> dict[tuple[str, int], _Partition]:
        """Group files by (symbol, year): the newest base, and the deltas written after it."""
        slots: dict[tuple[str, int], list[PartFile]] = defaultdict(list)
        for part in parts:
            slots[(part.symbol, part.year)].append(part)
        out: dict[tuple[str, int], _Partition] = {}
        for slot, files in slots.items():
            files.sort(key=lambda p: p.version)
            bases = [p for p in files if not p.delta]
            base = bases[-1] if bases else None
            # a base folds in (or, for replace_bars, replaces) every delta older than itself
            deltas = tuple(
                p for p in files if p.delta and (base is None or p.version > base.version)
            )
            if base is None and not deltas:
                continue
            out[slot] = _Partition(base=base, deltas=deltas, files=tuple(files))
        return out

    def _read_files(self, files: Sequence[PartFile]) -> pd.DataFrame:
        frames = self._map(self._read_part, files)
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    def _write_partitions(
        self,
        prefix: str,
        groups: Sequence[tuple[tuple[str, int], pd.DataFrame, bool]],
        column: str,
        state: dict[tuple[str, int], _Partition],
        superseded: list[PartFile],
        drop_untouched: bool = False,
    ) -> int:
        """Write ``((symbol, year), rows, is_delta)`` items, then delete what they supersede.

        Each base item is one new ``part-`` file of its partition; all the delta items go into
        ONE shared delta object (a daily run of many symbols costs one PUT). A new base
        supersedes every file of its partition; a new delta only the files that readers
        already ignore (leftovers of a crash). With ``drop_untouched`` every file in
        ``superseded`` goes (a full replacement of a symbol's history). A shared delta object
        is deleted once every (symbol, year) it holds has a newer base.
        """
        slots = {slot for slot, _, _ in groups}

        def file_name(kind: str, version: str, rows: pd.DataFrame, year: int, tail: str) -> str:
            if rows.empty:  # a tombstone base
                return f"{kind}-{version}_{year}0101_{year}0101_0.parquet"
            day = _naive_day(rows[column])
            return (
                f"{kind}-{version}_{day.min():%Y%m%d}_{day.max():%Y%m%d}_{len(rows)}{tail}.parquet"
            )

        def write_base(item: tuple[tuple[str, int], pd.DataFrame, bool]) -> None:
            (symbol, year), rows, _ = item
            if len(rows) > 1:
                rows = rows.sort_values(["symbol", column]).reset_index(drop=True)
            current = state.get((symbol, year))
            tail = (
                f"_{_row_digest(rows, len(rows) - 1, ('symbol', 'date'))}"
                if column == "date" and len(rows)
                else ""
            )
            version = _new_version(current.version if current else None)
            name = file_name("part", version, rows, year, tail)
            key = f"{prefix}/year={year}/symbol={encode_symbol(symbol)}/{name}"
            self.put_bytes(key, _to_parquet(rows))

        self._map(write_base, [g for g in groups if not g[2]])
        deltas = [(slot, rows) for slot, rows, delta in groups if delta]
        if deltas:
            rows = pd.concat([r for _, r in deltas], ignore_index=True)
            rows = rows.sort_values(["symbol", column]).reset_index(drop=True)
            # after every file of every partition it appends to
            after = max((state[s].version for s, _ in deltas if s in state), default=None)
            name = file_name("delta", _new_version(after), rows, 0, "")
            key = f"{prefix}/{_SHARED_DIR}/{name}"
            self.put_bytes(key, _to_parquet(rows))
            self._shared_frames[key] = rows

        # the swap: only after every new file is in place may the old ones go
        rebased = {slot for slot, _, delta in groups if not delta}
        stale = [
            p.key
            for p in superseded
            if not p.shared
            and (
                drop_untouched
                or (p.symbol, p.year) in rebased
                or (
                    (p.symbol, p.year) in slots
                    and p not in getattr(state.get((p.symbol, p.year)), "live", [])
                )
            )
        ]
        self.delete_keys(stale + self._dead_shared(prefix, superseded, state, rebased))
        return len(groups)

    def _dead_shared(
        self,
        prefix: str,
        listed: Sequence[PartFile],
        state: dict[tuple[str, int], _Partition],
        rebased: set[tuple[str, int]],
    ) -> list[str]:
        """Shared delta objects none of whose (symbol, year) rows are live any more.

        Rows of symbols this write did not list (another batch's) are checked with one more
        listing of those symbols, only for objects whose other rows are all superseded. Bases
        only ever get newer, so "superseded" stays true once seen.
        """
        versions = {p.key: p.version for p in listed if p.shared}
        held = {key: self._shared_parts(key) for key in versions}

        def superseded(p: PartFile, known: dict[tuple[str, int], _Partition]) -> bool:
            slot = (p.symbol, p.year)
            base = known[slot].base if slot in known else None
            return slot in rebased or (base is not None and base.version > versions[p.key])

        candidates = {
            key: [p for p in parts if (p.symbol, p.year) not in state]
            for key, parts in held.items()
            if all(superseded(p, state) for p in parts if (p.symbol, p.year) in state)
        }
        others = sorted({p.symbol for parts in candidates.values() for p in parts})
        more = self._partitions(self._parts(prefix, others)) if others else {}
        return [
            key for key, unknown in candidates.items() if all(superseded(p, more) for p in unknown)
        ]

    def delete_keys(self, keys: Sequence[str]) -> None:
        """Delete objects (1000 per request); a key that cannot be deleted is logged, not raised."""
        for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": k} for k in keys[i : i + 1000]]
            answer = self._call(
                partial(
                    self._s3.delete_objects,
                    Bucket=self.bucket,
                    Delete={"Objects": batch, "Quiet": True},
                ),
                f"delete {len(batch)} superseded file(s)",
            )
            if answer.get("Errors"):
                # harmless for readers (they read the newest file only); the next upsert retries
                logger.warning(
                    "could not delete %d superseded file(s): %s",
                    len(answer["Errors"]),
                    answer["Errors"][:3],
                )

    def _map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        # a call from inside a pool thread runs serially: waiting on the same pool could
        # deadlock it
        if len(items) <= 1 or getattr(_in_pool, "flag", False):
            return [fn(item) for item in items]
        with self._pool_lock:
            if self._pool is None:
                # one pool for the Store's life: starting threads per call costs more than
                # a small PUT when the CPU is busy
                self._pool = ThreadPoolExecutor(
                    max_workers=self.max_workers, initializer=_mark_pool_thread
                )
        return list(self._pool.map(fn, items))

    def _call(self, fn: Callable[[], T], what: str) -> T:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except (ClientError, BotoCoreError) as exc:
            raise StoreError(f"s3://{self.bucket}: {what} failed: {exc}") from exc
