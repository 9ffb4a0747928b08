"""The S3 Parquet store: partitioned tables, concurrency-safe upserts, quarantine, objects.

Layout (one bucket, any S3 endpoint: AWS, moto_server, LocalStack)::

    <prefix>/year=<YYYY>/symbol=<SYM>/part-<version>_<first>_<last>_<rows>_<tail>_h<horizon>.parquet
    <prefix>/_delta/delta-<version>_<first>_<last>_<rows>.parquet
    <quarantine_prefix>/stage=<stage>/day=<YYYY-MM-DD>/<version>.parquet

``<SYM>`` is the symbol escaped as Hive escapes partition values (``^GSPC`` ->
``%5EGSPC``), so any ticker round-trips through the key. ``<version>`` is a clock-based id
(ns + random suffix) newer than every file its writer listed in the partitions it writes;
``<first>``/``<last>`` are the dates the file holds, ``<tail>`` a digest of the values of its
last row (see :func:`_row_digest`) and ``<horizon>`` the newest version a base was merged
from. So a table's state needs LISTs and no GET. A partition rewrite touches one small
``year + symbol`` partition, never a symbol's whole history.

Year first: the daily run lists the newest year folder(s) only (:meth:`Store.list_parts`
with ``latest``), not every year of every symbol, and a read from a start date lists the
years from it on. Reading one symbol's whole history lists its folder in each year.

A (symbol, year) partition is a **base** file (``part-``) plus the **delta** rows written
after it. Deltas live in **shared** objects under ``<prefix>/_delta/``: one upsert that
appends to many symbols (a daily run: one new session of a whole batch of symbols) PUTs ONE
object, not one per symbol. A shared object's (symbol, year) groups are read from its
content (small, few, and cached by key: a key is never rewritten).

* Appending (tables keyed by ``(symbol, date)``): when every new row is dated after the
  partition's last day - except a copy of that last row whose digest equals its ``tail``
  (the overlap day of an incremental fetch, unchanged) - the new rows go into the shared
  delta object and no base is read.
* Merging (anything else: a changed or older row, other keys, a partition with
  ``MAX_DELTAS`` live deltas, i.e. compaction, or one holding copies of a day): the upsert
  reads the partition's live files as a second listing shows them, merges the new rows (the
  new row wins per key) and PUTs the result as a NEW base. Its horizon is the newest version
  in the first listing.
* ``atomic=True`` puts every new or changed row of every partition into ONE shared object
  (readers see all of it or none: a symbol's re-adjusted history across years);
  :meth:`Store.compact` then merges the partitions. (A merge of one of those partitions
  racing it can hide that part for a moment; the writer's check then writes it again.)

Every stored row carries its **row version** (column ``_version``, dropped by readers): the
version of the write that gave it its values, kept through merges.

What readers see, per partition: every file that no base **hides**, a base hiding the files
up to its horizon (:func:`hides`, :func:`partitions`). Normally that is one base and the
deltas after it, whose days follow each other. When live files hold copies of the same key
(concurrent writers), readers keep the copy of the newest row version (:func:`fold`) - one
rule for readers and merges, so every key is read once and the same by everyone.

Concurrent writers: exactly one row per key, none lost, whatever the interleaving (the
same batch appended twice at once, an append racing a compaction or a correction, two
merges racing, a writer killed at any point). How:

1. Copies. Two appends of the same days, or two merges of one partition that did not read
   each other (a "fork": two live bases), leave copies that readers fold by row version.
   A merge folds them the same way, so no row is duplicated, and a merge's own changes keep
   their (newer) row versions, so two forks' changes both survive.
2. Hiding without reading is the only way to lose a row: a merge M's base hides a file w
   (version at most M's horizon) that M did not read. M's horizon is the version of a file
   g in its first listing, and M reads what its second listing shows, every LIST of which
   comes after every LIST of the first: a listing is several LISTs (``_delta/``, the year
   folders), made at different times, so one listing alone could hold g, PUT late, and miss
   an older w, PUT early. With two, a w that M misses was PUT after g was visible. g (or,
   once merged and deleted, the newer base holding it) is still listed then: S3 LISTs are
   strongly consistent. So after its PUTs a writer LISTs its partitions again (``_delta/``
   first: what hides a vanished delta is a base in a year folder, listed after) and, when
   any other file there is newer than its own (:func:`conflicts`), writes again from a
   fresh listing: a new base merged with its earlier file, hidden or not. Its upsert
   returns only once such a check finds nothing newer; without a concurrent writer nothing
   is, as versions are chosen newer than all the writer listed. A writer killed before that
   check made a write that did not complete: the caller's retry (SQS redelivery, a re-run)
   writes it again.
3. The first check also flags a partition where copies of a day now overlap the writer's
   rows; the next round merges them into one base, so a run that appended days another
   run had just stored leaves one base, not copies waiting for the next write.
4. Deletes. Only after its check passes does a writer delete, in its partitions, the files
   hidden by a *safe* base: one that no file of its partition is newer than in the LIST (a
   shared object once every (symbol, year) it holds is hidden so). Such a base passes its
   writer's check as of that LIST, so no merge can hide it without reading it, and it
   holds the hidden files' rows (a base whose writer died before its check is never
   trusted until a newer merge supersedes it). A reader or merge whose GET finds a file
   gone (a concurrent merge deleted it) lists again.

Contention costs rounds, not rows: each round is a LIST, GETs and PUTs of the conflicting
partitions, after a random pause (up to ``_ATTEMPTS`` rounds, then :class:`StoreError`: the
write did not complete, nothing stored is lost). Without contention a write costs one more
LIST of its partitions than it did before (README: ingestion figures).

Crash safety (write new, then hide, then delete; never delete first; a single S3 PUT is
atomic): a run that dies before a PUT completes leaves the store as it was; one that dies
after leaves files that readers resolve as above (hidden, or folded) and that a later write
deletes.

S3 I/O goes through a per-Store botocore client (no process-wide endpoint setting, so two
stores on two endpoints never leak into each other) and one thread pool per Store; the
Parquet (de)serialisation is pyarrow's.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
import re
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
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


# <kind>-<20-digit ns version>-<8 hex>_<first YYYYMMDD>_<last YYYYMMDD>_<rows>[_<tail>]
# [_h<horizon>].parquet; the horizon (bases only) is the newest version the base was merged from
_VERSION_PATTERN = r"\d{20}-[0-9a-f]{8}"
_PART_RE = re.compile(
    rf"^(?P<kind>part|delta)-(?P<version>{_VERSION_PATTERN})_(?P<first>\d{{8}})_(?P<last>\d{{8}})"
    rf"_(?P<rows>\d+)(?:_(?P<tail>[0-9a-f]{{16}}))?(?:_h(?P<horizon>{_VERSION_PATTERN}))?\.parquet$"
)
# <prefix>/_delta/delta-<version>_<first>_<last>_<rows>.parquet: one daily append of many
# symbols; which (symbol, year) it holds, and their last rows, come from its content
_SHARED_RE = re.compile(
    rf"^delta-(?P<version>{_VERSION_PATTERN})_(?P<first>\d{{8}})_(?P<last>\d{{8}})_(?P<rows>\d+)"
    r"\.parquet$"
)
_SHARED_DIR = "_delta"
# the column every stored row carries: the version of the write that gave the row its values
# (kept through merges); readers fold copies of a key to the row of the newest version
VERSION_COLUMN = "_version"
# the horizon of a base merged from nothing: hides no file
_NO_HORIZON = f"{0:020d}-{0:08x}"
_DEFAULT_WORKERS = 16
# a partition with this many live deltas is compacted by its next upsert
MAX_DELTAS = 8
# attempts of one write under contention (each one after a conflict or a file deleted by a
# concurrent merge between its LIST and its GET), with a short randomised pause in between
_ATTEMPTS = 12
_RETRY_PAUSE_S = 0.1
# up to this many symbols (or year x symbol folders), list their folders, not the table
_FEW_SYMBOLS = 20
_FEW_FOLDERS = 64
_SHARED_CACHE = 256
_KEY_META = b"stockml.key"

Slot = tuple[str, int]  # (symbol, year): one partition


class ObjectGoneError(StoreError):
    """The object does not exist (e.g. a concurrent merge deleted it since it was listed)."""


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
    # bases: the newest version among the files the base was merged from (it holds their
    # rows, so it hides every file of the partition up to that version); None for a base
    # written before horizons were named, which hides every older file
    horizon: str | None = None


class Listing(list[PartFile]):
    """Data files from one listing of a table.

    ``since_year``: None when every year was listed; else only years >= it were (rows of
    older years need another listing before they are written).
    """

    def __init__(self, parts: Iterable[PartFile] = (), since_year: int | None = None) -> None:
        super().__init__(parts)
        self.since_year = since_year


def hides(base: PartFile, other: PartFile) -> bool:
    """Whether ``base`` holds every row of ``other`` (a file of the same partition).

    A base is merged from the live files of its partition as one LIST showed them and names the
    newest of their versions, its horizon. It hides exactly the files up to that version: those
    it read, and older ones that they hid in turn. A file written concurrently with a newer
    version stays visible; one with an older version that the merge did not see is the race
    that :func:`conflicts` makes its writer detect.
    """
    if base.delta or other.key == base.key:
        return False
    if base.horizon is None:
        return other.version < base.version
    return other.version <= base.horizon


@dataclass(frozen=True)
class _Partition:
    """The files of one (symbol, year) partition and which of them readers see."""

    live: tuple[PartFile, ...]  # files holding rows no base hides, oldest first
    files: tuple[PartFile, ...]  # every file, live or hidden

    @property
    def version(self) -> str:
        return max(p.version for p in self.files)

    @property
    def horizon(self) -> str:
        """The newest version among the live files: what a merge of them is a merge up to."""
        return max((p.version for p in self.live), default=_NO_HORIZON)

    @property
    def first(self) -> pd.Timestamp:
        return min(p.first for p in self.live)

    @property
    def last(self) -> pd.Timestamp:
        return max(p.last for p in self.live)

    @property
    def deltas(self) -> int:
        return sum(p.delta for p in self.live)

    @property
    def overlapping(self) -> bool:
        """Whether two live files may hold the same day (concurrent writes, a fork, a rewrite).

        Readers then fold copies of a key by their row version; the next write merges it.
        """
        spans = sorted((p.first, p.last) for p in self.live)
        return any(b[0] <= a[1] for a, b in zip(spans, spans[1:], strict=False))

    @property
    def rows(self) -> int:
        """Rows readers see (exact unless :attr:`overlapping`: then an upper bound)."""
        return sum(p.rows for p in self.live)

    @property
    def tail(self) -> str | None:
        """The digest of the partition's last row (None when unknown or ambiguous)."""
        last = self.last
        tails = {p.tail for p in self.live if p.last == last}
        return tails.pop() if len(tails) == 1 else None


def partitions(parts: Iterable[PartFile]) -> dict[Slot, _Partition]:
    """Group files by (symbol, year) and decide which ones readers see (see :func:`hides`)."""
    slots: dict[Slot, list[PartFile]] = defaultdict(list)
    for part in parts:
        slots[(part.symbol, part.year)].append(part)
    out: dict[Slot, _Partition] = {}
    for slot, files in slots.items():
        files.sort(key=lambda p: p.version)
        bases = [p for p in files if not p.delta]
        live = tuple(p for p in files if p.rows and not any(hides(b, p) for b in bases))
        out[slot] = _Partition(live=live, files=tuple(files))
    return out


def conflicts(written: Mapping[Slot, PartFile], after: Mapping[Slot, _Partition]) -> set[Slot]:
    """The partitions where a file just written may be hidden by a merge that did not read it.

    ``after`` comes from a LIST made after the PUTs. A merge hides a file only up to its
    horizon, the newest version it read; to hide ``mine`` without reading it, it must have read
    another file of a newer version, listed before ``mine`` was PUT. That file (or, once
    merged and deleted, the newer base holding it) is still listed after the PUT, so any other
    file of the partition with a newer version flags a possible conflict, and the writer writes
    its rows again. Versions are chosen newer than everything the writer listed, so without a
    concurrent writer nothing is flagged.
    """
    out = set()
    for slot, mine in written.items():
        state = after.get(slot)
        files = state.files if state is not None else ()
        if any(f.key != mine.key and f.version > mine.version for f in files):
            out.add(slot)
    return out


def _hidden_by_safe_base(f: PartFile, state: _Partition) -> bool:
    """Whether a base of the partition hides ``f`` and no file of it is newer than that base.

    Such a base passed its writer's check (:func:`conflicts`) as of this listing, so no merge
    can hide it without reading it: deleting what it hides loses nothing.
    """
    newest = max(p.version for p in state.files)
    return any(b.version == newest and hides(b, f) for b in state.files if not b.delta)


def fold(frame: pd.DataFrame, key: Sequence[str]) -> pd.DataFrame:
    """One row per key: of several copies, the one written by the newest version."""
    if not frame.duplicated(subset=list(key)).any():
        return frame
    order = frame.sort_values(VERSION_COLUMN, kind="stable")
    return order.drop_duplicates(subset=list(key), keep="last").sort_index()


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
        attempts: write rounds (1 = no concurrent writer got in the way; see the module
            docstring).
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
    attempts: int = 1


@dataclass(frozen=True)
class _Merged:
    """One partition after merging: the frame to write (None = unchanged) and its counts.

    ``delta``: the frame goes into the shared delta object; else it is the partition's new base,
    merged from the live files up to ``horizon``.
    """

    symbol: str
    year: int
    frame: pd.DataFrame | None
    new: int
    changed: int
    mismatch: bool
    delta: bool = False
    horizon: str = _NO_HORIZON


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


def _to_parquet(df: pd.DataFrame, key: Sequence[str] | None = None) -> bytes:
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
    if key is not None:  # the table's key, for readers folding copies of a row
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), _KEY_META: ",".join(key).encode()}
        )
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _from_parquet(data: bytes) -> pd.DataFrame:
    table = pq.read_table(io.BytesIO(data))
    frame = table.to_pandas()
    key = (table.schema.metadata or {}).get(_KEY_META)
    if key is not None:
        frame.attrs["key"] = key.decode().split(",")
    return frame


def _stamp(rows: pd.DataFrame, version: str) -> pd.DataFrame:
    """``rows`` with the row version set where it is not yet (rows new in this write)."""
    rows = rows.copy()
    if VERSION_COLUMN in rows.columns:
        rows[VERSION_COLUMN] = (
            rows[VERSION_COLUMN].astype(object).where(rows[VERSION_COLUMN].notna(), version)
        )
    else:
        rows[VERSION_COLUMN] = version
    rows[VERSION_COLUMN] = rows[VERSION_COLUMN].astype(str)
    return rows


def _pause(attempt: int) -> None:
    """A short random wait before another attempt, so that racing writers drift apart."""
    time.sleep(random.uniform(0, _RETRY_PAUSE_S * 2 ** min(attempt, 5)))  # noqa: S311


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
    columns = [c for c in sorted(df.columns) if c not in key and c != VERSION_COLUMN]
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
    if current.overlapping:  # merge it: the next write folds concurrent copies away
        return None
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


def _decide(
    slot: Slot,
    current: _Partition | None,
    rows: pd.DataFrame,
    key: Sequence[str],
    atomic: bool,
    force: bool,
) -> _Merged | None:
    """What one partition's write is, from the object names alone; None: merge (read it).

    A new partition is written whole; rows that only add days after the partition's last
    one (its last row unchanged) are appended as a delta, until ``MAX_DELTAS``; anything
    else needs the partition's rows.
    """
    symbol, year = slot
    if force:
        return None
    if current is None or not current.live:
        return _Merged(symbol, year, rows, len(rows), 0, False, delta=atomic) if len(rows) else None
    if list(key) != ["symbol", "date"] or "date" not in rows.columns or rows.empty:
        return None
    after = _rows_after(current, rows, key)
    if after is not None and (atomic or current.deltas < MAX_DELTAS):
        # no GET: only days after the partition's last one, whose stored row the object
        # name proves unchanged
        return _Merged(
            symbol, year, after if len(after) else None, len(after), 0, False, delta=True
        )
    return None


def _readable(state: dict[Slot, _Partition]) -> dict[Slot, _Partition]:
    """The partitions holding rows."""
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

    def put_bytes_if(self, key: str, data: bytes, etag: str | None = None) -> str | None:
        """Write ``key`` only if it does not exist (``etag`` None) or still has ETag ``etag``.

        A conditional PUT (``If-None-Match: *`` or ``If-Match``; AWS S3 and moto_server): of
        several writers racing for one key, exactly one succeeds.

        Returns:
            The new object's ETag, or None when the condition failed (another writer won).
        """
        from botocore.exceptions import ClientError

        condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
        try:
            answer = self._call(
                lambda: self._s3.put_object(Bucket=self.bucket, Key=key, Body=data, **condition),
                f"put {key} (conditional)",
            )
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") in (
                "PreconditionFailed",  # the condition is false
                "ConditionalRequestConflict",  # another conditional write of the key in flight
                "NoSuchKey",  # If-Match on a key deleted meanwhile
            ):
                return None
            raise
        return str(answer["ETag"])

    def get_bytes(self, key: str) -> bytes:
        """Read one object.

        Raises:
            StoreError: the object does not exist or the read failed.
        """
        return self.get_object(key)[0]

    def get_object(self, key: str) -> tuple[bytes, str]:
        """Read one object and its ETag (what :meth:`put_bytes_if` compares).

        Raises:
            StoreError: the object does not exist or the read failed.
        """
        body = self._call(lambda: self._s3.get_object(Bucket=self.bucket, Key=key), f"get {key}")
        return bytes(body["Body"].read()), str(body["ETag"])

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
        atomic: bool = False,
    ) -> UpsertReport:
        """Validate bars, quarantine the bad rows, upsert the good ones by (symbol, date).

        Args:
            df: bars of one or more symbols.
            expect_unchanged: ``(symbol, date)`` keys that must match what is stored; see
                :meth:`upsert_table`.
            parts: the raw table's current files from :meth:`list_parts` (default: list).
            atomic: write every new or changed row in ONE object (see :meth:`upsert_table`).

        Returns:
            UpsertReport: counts of valid, new, changed and quarantined rows (also per symbol).
        """
        checked = validate_bars(df)
        if len(checked.rejected):
            self.write_quarantine(checked.rejected, stage=self.raw_prefix)
        report = self.upsert_table(
            self.raw_prefix,
            checked.valid,
            expect_unchanged=expect_unchanged,
            parts=parts,
            atomic=atomic,
        )
        quarantined = checked.rejected.groupby(checked.rejected["symbol"].astype(str)).size()
        return replace(
            report,
            rows_quarantined=len(checked.rejected),
            quarantined_by_symbol={str(k): int(v) for k, v in quarantined.items()},
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
        for (symbol, _), part in _readable(partitions(parts)).items():
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
        """Per symbol: ``rows, first, last, partitions`` under ``prefix`` (default raw).

        From one LIST; a partition whose live files overlap (concurrent writes not merged yet)
        is read to count each row once.
        """
        prefix = prefix or self.raw_prefix

        def count() -> list[dict[str, object]]:
            state = _readable(partitions(self._parts(prefix)))
            dirty = [p for p in state.values() if p.overlapping]
            exact = dict(zip(map(id, dirty), self._map(self._read_partition, dirty), strict=True))
            return [
                {
                    "symbol": symbol,
                    "rows": len(exact[id(p)]) if id(p) in exact else p.rows,
                    "first": p.first,
                    "last": p.last,
                }
                for (symbol, _), p in state.items()
            ]

        rows = self._retrying(count, f"summary of {prefix}")
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

        Only the live files of partitions whose dates overlap ``[start, end]`` are read; rows
        are then cut to the range on the table's ``date`` (or ``published_at``, by UTC day)
        column. Each key is read once (copies from concurrent writes are folded to the newest).
        """
        lo = None if start is None else pd.Timestamp(start).normalize()
        hi = None if end is None else pd.Timestamp(end).normalize()

        def read() -> list[pd.DataFrame]:
            state = _readable(
                partitions(self._parts(prefix, symbols, since_year=lo.year if lo else None))
            )
            wanted = [
                p
                for p in state.values()
                if (lo is None or p.last >= lo) and (hi is None or p.first <= hi)
            ]
            return self._map(self._read_partition, wanted)

        frames = self._retrying(read, f"read {prefix}")
        if not frames:
            return pd.DataFrame()
        frame = pd.concat(frames, ignore_index=True).drop(columns=VERSION_COLUMN)
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
        atomic: bool = False,
    ) -> UpsertReport:
        """Insert or replace rows by ``key`` in ``prefix``, partitioned by symbol and year.

        The year comes from the ``date`` column (``published_at`` for news). Partitions whose
        merged content equals what is stored are not rewritten, so a re-run writes nothing;
        a partition holding copies from concurrent writes is merged by the next write to it.
        Safe with any number of concurrent writers (see the module docstring): the upsert
        returns once a LIST made after its PUTs shows that no concurrent merge can have hidden
        its rows, writing a partition again when one may have.

        Args:
            prefix: the table.
            df: rows to upsert (a later duplicate of a key wins).
            key: the columns identifying a row.
            expect_unchanged: keys whose stored values must equal the new ones (e.g. the
                overlap day of an incremental fetch). When one differs, NOTHING of that
                symbol is written and the symbol is listed in ``UpsertReport.mismatched``.
            parts: a listing already made with :meth:`list_parts` (used by the first round).
            atomic: write every new or changed row, of every partition, in ONE object, so that
                readers see all of them or none (e.g. a symbol's re-adjusted history across
                years). Readers fold the partitions until :meth:`compact` merges them.

        Raises:
            StoreError: the frame lacks the key or date columns, S3 failed, or concurrent
                writers kept conflicting for ``_ATTEMPTS`` rounds.
        """
        if df.empty:
            return UpsertReport()
        key = list(key)
        missing = [c for c in key if c not in df.columns]
        if missing:
            raise StoreError(f"upsert into {prefix!r}: missing key columns {missing}")
        column = _date_column(df)
        new = df.drop_duplicates(subset=key, keep="last").reset_index(drop=True)
        days = _naive_day(new[column])
        groups = {
            (str(symbol), int(year)): rows
            for (symbol, year), rows in new.groupby(
                [new["symbol"].astype(str), days.dt.year], sort=False
            )
        }
        merged, mismatched, attempts = self._write_slots(
            prefix, groups, key, set(expect_unchanged), parts, atomic=atomic
        )
        kept = [m for m in merged.values() if m.symbol not in mismatched]
        new_by: dict[str, int] = defaultdict(int)
        changed_by: dict[str, int] = defaultdict(int)
        for m in kept:
            new_by[m.symbol] += m.new
            changed_by[m.symbol] += m.changed
        return UpsertReport(
            rows_valid=int(
                sum(len(rows) for (s, _), rows in groups.items() if s not in mismatched)
            ),
            rows_new=sum(new_by.values()),
            rows_changed=sum(changed_by.values()),
            partitions_written=sum(m.frame is not None for m in kept),
            new_by_symbol=dict(new_by),
            changed_by_symbol=dict(changed_by),
            mismatched=frozenset(mismatched),
            attempts=attempts,
        )

    def compact(
        self,
        prefix: str | None = None,
        symbols: Sequence[str] | None = None,
        key: Sequence[str] = ("symbol", "date"),
    ) -> int:
        """Merge each partition (of ``symbols``, default all) made of several live files.

        Not needed for correctness (readers fold, writes merge when due); it makes later
        reads and appends cheaper, e.g. right after an ``atomic`` upsert.

        Returns:
            The number of partitions rewritten.
        """
        prefix = prefix or self.raw_prefix
        state = _readable(partitions(self._parts(prefix, symbols)))
        slots = {slot: pd.DataFrame() for slot, p in state.items() if len(p.live) > 1}
        if not slots:
            return 0
        merged, _, _ = self._write_slots(prefix, slots, list(key), set(), None, force=True)
        return sum(m.frame is not None for m in merged.values())

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
            done = {s for (s, y) in _readable(partitions(parts)) if y >= year}
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
        try:
            frame = self._shared_frame(key)
        except ObjectGoneError:
            # deleted since it was listed: every row of it was hidden by a newer base
            return []
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
        """The rows of one data file (of a shared delta: of the part's (symbol, year)), each
        with its row version.

        Raises:
            ObjectGoneError: the file was deleted since it was listed.
        """
        if part.shared:
            self._shared_parts(part.key)
            shared = self._shared_frame(part.key)
            positions = self._shared_index[part.key][1][(part.symbol, part.year)]
            frame = shared.iloc[positions].reset_index(drop=True)
            frame.attrs = dict(shared.attrs)
        else:
            frame = _from_parquet(self.get_bytes(part.key))
        if VERSION_COLUMN not in frame.columns:  # written before rows carried versions
            frame[VERSION_COLUMN] = part.version
        return frame

    def _read_partition(self, partition: _Partition) -> pd.DataFrame:
        """The rows readers see in one partition: its live files, copies of a key folded."""
        frames = self._map(self._read_part, partition.live)
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        if partition.overlapping:
            key = frames[0].attrs.get("key") or ["symbol", _date_column(frame)]
            frame = fold(frame, key).reset_index(drop=True)
            frame.attrs["key"] = key
        return frame

    def _retrying(self, fn: Callable[[], T], what: str) -> T:
        """``fn()`` (a LIST, then GETs) again while a concurrent merge deletes what it listed."""
        for attempt in range(_ATTEMPTS):
            try:
                return fn()
            except ObjectGoneError:
                _pause(attempt)
        raise StoreError(f"s3://{self.bucket}: {what}: files kept changing ({_ATTEMPTS} tries)")

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
            horizon=match["horizon"],
        )

    def _write_slots(
        self,
        prefix: str,
        groups: Mapping[Slot, pd.DataFrame],
        key: list[str],
        frozen: set[tuple[object, ...]],
        parts: Listing | None,
        atomic: bool = False,
        force: bool = False,
    ) -> tuple[dict[Slot, _Merged], set[str], int]:
        """Upsert each partition's rows: merge, PUT, LIST again, GC; again where in conflict.

        One round: list (or take ``parts``), merge each partition with its rows, PUT the new
        files (bases, one shared delta object), then LIST the partitions written and check
        them with :func:`conflicts`. Partitions without conflict are done, and the files their
        new bases hide are deleted; the others, and (in the first round) those where a
        concurrent writer's copies of a day now overlap ours, go round again from a fresh
        listing, writing a new base.

        Returns:
            Each partition's merge in the first round that reached it (its counts: what the
            store lacked then), the symbols left untouched because an expected-unchanged row
            differed, and the number of rounds.
        """
        pending = dict(groups)
        first: dict[Slot, _Merged] = {}
        mismatched: set[str] = set()
        mine: dict[Slot, PartFile] = {}  # our file in each conflicted partition
        for attempt in range(_ATTEMPTS):
            again = attempt > 0 and bool(mine)
            # after a conflict: a new base, merged with our previous file even if a merge hid
            # it (our rows may be nowhere else)
            atomic_now, force_now = atomic and not again, force or again
            try:
                existing = self._listing_for(prefix, pending, parts if attempt == 0 else None)
                state = partitions(existing)
                decided = {
                    slot: _decide(slot, state.get(slot), rows, key, atomic_now, force_now)
                    for slot, rows in pending.items()
                }
                to_read = sorted(slot for slot, d in decided.items() if d is None)
                # a merge hides files up to the newest version in THIS listing, but reads the
                # partitions as a second listing, all of whose LISTs come after every file of
                # the first: a file it misses and hides was PUT after one of those, and its
                # writer's check sees it (see the module docstring)
                reread = (
                    partitions(self._listing_for(prefix, {s: pending[s] for s in to_read}, None))
                    if to_read
                    else {}
                )
                merged = [d for d in decided.values() if d is not None] + self._map(
                    partial(
                        self._merge,
                        state=reread,
                        horizons={s: state[s].horizon for s in to_read if s in state},
                        key=key,
                        frozen=frozen,
                        atomic=atomic_now,
                        force=force_now,
                        extras=mine,
                    ),
                    [(slot, pending[slot]) for slot in to_read],
                )
                state = {**state, **reread}
            except ObjectGoneError:  # a concurrent merge deleted a file we listed: list again
                _pause(attempt)
                continue
            bad = {m.symbol for m in merged if m.mismatch}
            if bad:
                logger.warning(
                    "not upserting %s: stored rows expected unchanged differ", sorted(bad)
                )
            mismatched |= bad
            for m in merged:
                first.setdefault((m.symbol, m.year), m)
            todo = [m for m in merged if m.symbol not in mismatched and m.frame is not None]
            if not todo:
                return first, mismatched, attempt + 1
            written = self._put(prefix, todo, key, state)
            after = self._check_listing(prefix, written)
            conflicted = conflicts(written, after)
            if not atomic and attempt == 0:
                # copies of our days from a concurrent writer: merge them now (once; later
                # copies are folded by readers and merged by the next write)
                conflicted |= {slot for slot in written if after[slot].overlapping}
            self._collect(prefix, {s: f for s, f in written.items() if s not in conflicted}, after)
            if not conflicted:
                return first, mismatched, attempt + 1
            logger.info(
                "%d partition(s) written concurrently by another writer; writing them again: %s",
                len(conflicted),
                sorted(conflicted)[:5],
            )
            if logger.isEnabledFor(logging.DEBUG):
                for slot in sorted(conflicted):
                    newer = [f.key for f in after[slot].files if f.version > written[slot].version]
                    logger.debug("%s: ours %s; newer %s", slot, written[slot].key, newer)
            pending = {slot: groups[slot] for slot in conflicted}
            mine = {slot: written[slot] for slot in conflicted}
            _pause(attempt)
        raise StoreError(
            f"s3://{self.bucket}/{prefix}: concurrent writers kept conflicting on "
            f"{sorted(pending)[:5]} ({_ATTEMPTS} rounds); nothing is lost, run the write again"
        )

    def _check_listing(self, prefix: str, slots: Iterable[Slot]) -> dict[Slot, _Partition]:
        """The files of ``slots`` right after our PUTs, listed in the order the check needs.

        ``_delta/`` first (and the shared objects' GETs), the year folders after: a file that
        vanishes in between was hidden by a base PUT before it vanished, so the year folders'
        LIST, made later, shows that base (a base's successors sort after it in its folder).
        The LISTs follow our PUT closely: the fewer files concurrent writers PUT after ours
        (harmless, but newer), the fewer partitions :func:`conflicts` flags.
        """
        symbols = {symbol for symbol, _ in slots}
        years = sorted({year for _, year in slots})
        shared = [
            p
            for parts in self._map(self._shared_parts, self.list_keys(f"{prefix}/{_SHARED_DIR}/"))
            for p in parts
            if p.symbol in symbols
        ]
        year_keys = self._map(self.list_keys, [f"{prefix}/year={y}/" for y in years])
        listed = self._parse_keys(prefix, (k for keys in year_keys for k in keys), symbols)
        return partitions(shared + listed)

    def _listing_for(
        self, prefix: str, pending: Mapping[Slot, pd.DataFrame], parts: Listing | None
    ) -> list[PartFile]:
        """The files of the partitions in ``pending``: from ``parts`` where it covers them."""
        symbols = sorted({symbol for symbol, _ in pending})
        since = min(year for _, year in pending)
        if parts is None:
            return self._parts(prefix, symbols, since_year=since)
        # a listing of more symbols (a whole ingestion run): only these matter here
        wanted = set(symbols)
        existing = [p for p in parts if p.symbol in wanted]
        listed_from = getattr(parts, "since_year", None)
        older = (
            set()
            if listed_from is None
            else {symbol for symbol, year in pending if year < listed_from}
        )
        if older:  # rows of years the listing did not cover
            existing = [p for p in existing if p.symbol not in older]
            existing += self._parts(prefix, sorted(older), since_year=since)
        return existing

    def _merge(
        self,
        item: tuple[Slot, pd.DataFrame],
        state: Mapping[Slot, _Partition],
        horizons: Mapping[Slot, str],
        key: list[str],
        frozen: set[tuple[object, ...]],
        atomic: bool,
        force: bool,
        extras: Mapping[Slot, PartFile],
    ) -> _Merged:
        """Merge one partition's live files (``state``) with its new rows (see :func:`_decide`).

        The new base hides the files up to ``horizons[slot]`` (from the first listing).
        ``force``: write a new base even when nothing changes; ``extras``: a file per
        partition to merge in even if a base hides it (our own earlier write, after a conflict).
        """
        (symbol, year), rows = item
        current = state.get((symbol, year)) or _Partition(live=(), files=())
        horizon = horizons.get((symbol, year), _NO_HORIZON)
        extra = extras.get((symbol, year))
        if extra is not None:
            horizon = max(horizon, extra.version)
            if extra not in current.live:
                try:
                    self._read_part(extra)
                    current = _Partition(live=(*current.live, extra), files=current.files)
                except ObjectGoneError:  # deleted: a base that holds it hid it
                    pass
        if not current.live:
            if rows.empty:
                return _Merged(symbol, year, None, 0, 0, False)
            return _Merged(symbol, year, rows, len(rows), 0, False, delta=atomic)
        after = None
        if key == ["symbol", "date"] and "date" in rows.columns and not force and len(rows):
            after = _rows_after(current, rows, key)
        old = self._read_partition(current)
        # a merge of overlapping files writes them as one even when the rows add nothing
        rewrite = (force or current.overlapping) and not atomic
        if rows.empty:
            return _Merged(symbol, year, old if rewrite else None, 0, 0, False, horizon=horizon)
        if after is not None and len(after):  # compaction: the new days follow the stored ones
            merged = pd.concat([old, after], ignore_index=True)
            return _Merged(symbol, year, merged, len(after), 0, False, horizon=horizon)
        # vectorised key matching: the merge runs once per partition of a daily run
        old_keys, new_keys = _key_hash(old, key), _key_hash(rows, key)
        stored = np.isin(new_keys, old_keys)
        same = np.zeros(len(rows), dtype=bool)
        if stored.any():
            fresh = rows[stored]
            prior = old.iloc[pd.Index(old_keys).get_indexer(new_keys[stored])]
            equal = np.ones(len(fresh), dtype=bool)
            for c in (c for c in fresh.columns if c in old.columns and c not in key):
                a, b = prior[c].to_numpy(), fresh[c].to_numpy()
                equal &= (a == b) | (pd.isna(a) & pd.isna(b))
            same[np.flatnonzero(stored)[equal]] = True
        differs = stored & ~same
        n_new = int((~stored).sum())
        if n_new == 0 and not differs.any():
            return _Merged(symbol, year, old if rewrite else None, 0, 0, False, horizon=horizon)
        changed = set(rows.loc[differs, key].itertuples(index=False, name=None))
        mismatch = bool(frozen & changed)
        if atomic:  # only what changes, into the one object readers see whole or not at all
            return _Merged(
                symbol, year, rows[~same], n_new, int(differs.sum()), mismatch, delta=True
            )
        keep = old[~np.isin(old_keys, new_keys)]
        merged = pd.concat([keep, rows], ignore_index=True)
        return _Merged(symbol, year, merged, n_new, int(differs.sum()), mismatch, horizon=horizon)

    def _put(
        self,
        prefix: str,
        todo: Sequence[_Merged],
        key: Sequence[str],
        state: Mapping[Slot, _Partition],
    ) -> dict[Slot, PartFile]:
        """PUT the merged partitions: one new base each, all the deltas as ONE shared object.

        Every new file's version is newer than every file listed in its partitions, and each
        row written for the first time (or changed) gets that version. Nothing is deleted here.
        """

        def name(kind: str, version: str, rows: pd.DataFrame, suffix: str) -> str:
            day = _naive_day(rows[_date_column(rows)])
            return f"{kind}-{version}_{day.min():%Y%m%d}_{day.max():%Y%m%d}_{len(rows)}{suffix}"

        def sort(rows: pd.DataFrame) -> pd.DataFrame:
            return rows.sort_values(["symbol", _date_column(rows)]).reset_index(drop=True)

        def write_base(m: _Merged) -> tuple[Slot, PartFile]:
            assert m.frame is not None
            current = state.get((m.symbol, m.year))
            version = _new_version(current.version if current else None)
            rows = _stamp(sort(m.frame), version)
            tail = (
                f"_{_row_digest(rows, len(rows) - 1, ('symbol', 'date'))}"
                if "date" in rows.columns
                else ""
            )
            folder = f"{prefix}/year={m.year}/symbol={encode_symbol(m.symbol)}"
            path = f"{folder}/{name('part', version, rows, tail)}_h{m.horizon}.parquet"
            self.put_bytes(path, _to_parquet(rows, key))
            part = self._parse(prefix, path)
            assert part is not None
            return (m.symbol, m.year), part

        written = dict(self._map(write_base, [m for m in todo if not m.delta]))
        deltas = [m for m in todo if m.delta]
        if deltas:
            slots = [(m.symbol, m.year) for m in deltas]
            # newer than every file of every partition it appends to
            after = max((state[s].version for s in slots if s in state), default=None)
            version = _new_version(after)
            rows = _stamp(sort(pd.concat([m.frame for m in deltas], ignore_index=True)), version)
            path = f"{prefix}/{_SHARED_DIR}/{name('delta', version, rows, '')}.parquet"
            data = _to_parquet(rows, key)
            self.put_bytes(path, data)
            self._shared_frames[path] = _from_parquet(data)
            written.update(
                {
                    (p.symbol, p.year): p
                    for p in self._shared_parts(path)
                    if (p.symbol, p.year) in slots
                }
            )
        return written

    def _collect(
        self, prefix: str, done: Mapping[Slot, PartFile], after: Mapping[Slot, _Partition]
    ) -> None:
        """Delete the files that a safe base hides, in the partitions of a complete write.

        A base is safe once a LIST after its PUT shows no newer file in its partition (ours
        passed that check): no merge can then hide it without reading it, so the rows of the
        files it hides stay readable through it. A shared delta object goes once every
        (symbol, year) it holds is hidden by a safe base.
        """
        stale: list[str] = []
        shared: set[str] = set()
        for slot in done:
            state = after.get(slot)
            if state is None:
                continue
            for f in state.files:
                if _hidden_by_safe_base(f, state):
                    if f.shared:
                        shared.add(f.key)
                    else:
                        stale.append(f.key)
        self.delete_keys(stale + self._dead_shared(prefix, shared, after))

    def _dead_shared(
        self, prefix: str, keys: Iterable[str], known: Mapping[Slot, _Partition]
    ) -> list[str]:
        """The shared delta objects among ``keys`` whose every (symbol, year) part a safe base
        hides.

        Parts of partitions ``known`` does not cover (another batch's symbols, older years)
        are checked with one more listing of those symbols, only for objects whose other parts
        are all hidden.
        """

        def hidden(p: PartFile, state: Mapping[Slot, _Partition]) -> bool:
            slot = (p.symbol, p.year)
            return slot in state and _hidden_by_safe_base(p, state[slot])

        held = {key: self._shared_parts(key) for key in keys}
        candidates = {
            key: [p for p in parts if (p.symbol, p.year) not in known]
            for key, parts in held.items()
            if parts and all(hidden(p, known) for p in parts if (p.symbol, p.year) in known)
        }
        others = sorted({p.symbol for parts in candidates.values() for p in parts})
        more = partitions(self._parts(prefix, others)) if others else {}
        return [key for key, unknown in candidates.items() if all(hidden(p, more) for p in unknown)]

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
        except ClientError as exc:
            error = StoreError
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                error = ObjectGoneError
            raise error(f"s3://{self.bucket}: {what} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"s3://{self.bucket}: {what} failed: {exc}") from exc
