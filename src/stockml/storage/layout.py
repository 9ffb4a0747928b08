"""The store's layout: object names, partitions, row versions and merges, as pure functions.

Nothing here talks to S3: every function takes object keys, parsed names or frames and returns
the same, so the layout's rules are unit-tested without a server. :mod:`stockml.storage.store`
does the I/O around them.

Layout (one bucket, any S3 endpoint: AWS, moto_server, LocalStack)::

    <prefix>/year=<YYYY>/symbol=<SYM>/part-<version>_<first>_<last>_<rows>_<tail>_h<horizon>.parquet
    <prefix>/_delta/delta-<version>_<first>_<last>_<rows>.parquet
    <quarantine_prefix>/stage=<stage>/day=<YYYY-MM-DD>/<version>.parquet

``<SYM>`` is the symbol escaped as Hive escapes partition values (``^GSPC`` ->
``%5EGSPC``), so any ticker round-trips through the key. ``<version>`` is a clock-based id
(ns + random suffix) newer than every file its writer listed in the partitions it writes;
``<first>``/``<last>`` are the dates the file holds, ``<tail>`` a digest of the values of its
last row (see :func:`row_digest`) and ``<horizon>`` the newest version a base was merged
from. So a table's state needs LISTs and no GET. A partition rewrite touches one small
``year + symbol`` partition, never a symbol's whole history.

Year first: the daily run lists the newest year folder(s) only, not every year of every
symbol, and a read from a start date lists the years from it on. Reading one symbol's whole
history lists its folder in each year.

A (symbol, year) partition is a **base** file (``part-``) plus the **delta** rows written
after it. Deltas live in **shared** objects under ``<prefix>/_delta/``: one upsert that
appends to many symbols (a daily run: one new session of a whole batch of symbols) PUTs ONE
object, not one per symbol. A shared object's (symbol, year) groups are read from its
content (:func:`shared_parts`: small, few, and cached by key, as a key is never rewritten).

* Appending (tables keyed by ``(symbol, date)``): when every new row is dated after the
  partition's last day - except a copy of that last row whose digest equals its ``tail``
  (the overlap day of an incremental fetch, unchanged) - the new rows go into the shared
  delta object and no base is read (:func:`decide`, :func:`rows_after`).
* Merging (anything else: a changed or older row, other keys, a partition with
  ``max_deltas`` live deltas, i.e. compaction, or one holding copies of a day): the new row
  wins per key (:func:`merge_rows`) and the result is a NEW base, whose horizon is the newest
  version it was merged from.
* Atomic writes put every new or changed row of every partition into ONE shared object
  (readers see all of it or none).

Every stored row carries its **row version** (column ``_version``, dropped by readers): the
version of the write that gave it its values, kept through merges (:func:`stamp`).

What readers see, per partition: every file that no base **hides**, a base hiding the files
up to its horizon (:func:`hides`, :func:`partitions`). Normally that is one base and the
deltas after it, whose days follow each other. When live files hold copies of the same key
(concurrent writers), readers keep the copy of the newest row version (:func:`fold`) - one
rule for readers and merges, so every key is read once and the same by everyone.
:func:`conflicts` and :func:`hidden_by_safe_base` are the two checks the store's writers make
after their PUTs (the reasoning: :mod:`stockml.storage.store`).
"""

from __future__ import annotations

import hashlib
import io
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stockml.errors import StoreError
from stockml.s3 import decode_symbol, encode_symbol

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
#: the folder of a table's shared delta objects
SHARED_DIR = "_delta"
#: the column every stored row carries: the version of the write that gave the row its values
#: (kept through merges); readers fold copies of a key to the row of the newest version
VERSION_COLUMN = "_version"
#: the horizon of a base merged from nothing: hides no file
NO_HORIZON = f"{0:020d}-{0:08x}"
_KEY_META = b"stockml.key"
# the key whose appends need no read: (symbol, date) rows, compared by their last day
_DAILY_KEY = ["symbol", "date"]

Slot = tuple[str, int]  # (symbol, year): one partition


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
class Partition:
    """The files of one (symbol, year) partition and which of them readers see."""

    live: tuple[PartFile, ...]  # files holding rows no base hides, oldest first
    files: tuple[PartFile, ...]  # every file, live or hidden

    @property
    def version(self) -> str:
        return max(p.version for p in self.files)

    @property
    def horizon(self) -> str:
        """The newest version among the live files: what a merge of them is a merge up to."""
        return max((p.version for p in self.live), default=NO_HORIZON)

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


def partitions(parts: Iterable[PartFile]) -> dict[Slot, Partition]:
    """Group files by (symbol, year) and decide which ones readers see (see :func:`hides`)."""
    slots: dict[Slot, list[PartFile]] = defaultdict(list)
    for part in parts:
        slots[(part.symbol, part.year)].append(part)
    out: dict[Slot, Partition] = {}
    for slot, files in slots.items():
        files.sort(key=lambda p: p.version)
        bases = [p for p in files if not p.delta]
        live = tuple(p for p in files if p.rows and not any(hides(b, p) for b in bases))
        out[slot] = Partition(live=live, files=tuple(files))
    return out


def readable(state: Mapping[Slot, Partition]) -> dict[Slot, Partition]:
    """The partitions holding rows."""
    return {slot: p for slot, p in state.items() if p.live}


def conflicts(written: Mapping[Slot, PartFile], after: Mapping[Slot, Partition]) -> set[Slot]:
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


def hidden_by_safe_base(f: PartFile, state: Partition) -> bool:
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


# ---------------------------------------------------------------------- object names


@lru_cache(maxsize=4096)
def _day(yyyymmdd: str) -> pd.Timestamp:
    # the same few hundred dates recur across thousands of object names in one LIST
    return pd.Timestamp(yyyymmdd)


def new_version(after: str | None = None) -> str:
    """A new file version: the ns clock and a random suffix, newer than ``after``.

    Bumped past ``after`` so that a slow clock can never make a new file sort before the one it
    replaces.
    """
    now = time.time_ns()
    if after is not None:
        now = max(now, int(after.split("-")[0]) + 1)
    return f"{now:020d}-{uuid.uuid4().hex[:8]}"


def parse_key(prefix: str, key: str) -> PartFile | None:
    """The file a key of a year folder names (None: not a data file of table ``prefix``)."""
    pieces = key[len(prefix) + 1 :].split("/")
    if len(pieces) != 3 or not pieces[0].startswith("year=") or not pieces[1].startswith("symbol="):
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


def parse_keys(prefix: str, keys: Iterable[str], wanted: set[str] | None) -> list[PartFile]:
    """The data files among ``keys`` (of the symbols in ``wanted``; None: of every symbol)."""
    parsed = (parse_key(prefix, key) for key in keys)
    return [p for p in parsed if p is not None and (wanted is None or p.symbol in wanted)]


def _span_name(kind: str, version: str, rows: pd.DataFrame) -> str:
    day = naive_day(rows[date_column(rows)])
    return f"{kind}-{version}_{day.min():%Y%m%d}_{day.max():%Y%m%d}_{len(rows)}"


def base_key(
    prefix: str, symbol: str, year: int, version: str, rows: pd.DataFrame, horizon: str
) -> str:
    """The key of a new base of (symbol, year) holding ``rows`` (sorted, stamped)."""
    tail = f"_{row_digest(rows, len(rows) - 1, _DAILY_KEY)}" if "date" in rows.columns else ""
    folder = f"{prefix}/year={year}/symbol={encode_symbol(symbol)}"
    return f"{folder}/{_span_name('part', version, rows)}{tail}_h{horizon}.parquet"


def shared_key(prefix: str, version: str, rows: pd.DataFrame) -> str:
    """The key of a new shared delta object holding ``rows`` (sorted, stamped)."""
    return f"{prefix}/{SHARED_DIR}/{_span_name('delta', version, rows)}.parquet"


def is_shared_key(key: str) -> bool:
    """Whether ``key`` names a shared delta object (``<prefix>/_delta/delta-...parquet``)."""
    return _SHARED_RE.match(key.rsplit("/", 1)[-1]) is not None


def shared_parts(key: str, frame: pd.DataFrame) -> tuple[list[PartFile], dict[Slot, np.ndarray]]:
    """The parts of the shared delta object ``key`` holding ``frame``: one per (symbol, year).

    Returns:
        The parts (none when ``key`` is not a shared delta object's, see
        :func:`is_shared_key`), and the row positions of each part in ``frame``, in date order.
    """
    match = _SHARED_RE.match(key.rsplit("/", 1)[-1])
    if match is None:
        return [], {}
    column = date_column(frame)
    day = naive_day(frame[column])
    # (symbol, day) order: each (symbol, year) group is a run whose last row is its tail
    order = np.lexsort((day.to_numpy(), frame["symbol"].astype(str).to_numpy()))
    groups = frame.iloc[order].groupby(
        [frame["symbol"].astype(str).to_numpy()[order], day.dt.year.to_numpy()[order]],
        sort=False,
    )
    runs = {
        (str(symbol), int(year)): order[positions]
        for (symbol, year), positions in groups.indices.items()
    }
    tails = (
        row_digests(frame, [int(p[-1]) for p in runs.values()], _DAILY_KEY)
        if column == "date"
        else [None] * len(runs)
    )
    parts = [
        PartFile(
            key=key,
            symbol=symbol,
            year=year,
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
    return parts, runs


def quarantine_key(quarantine_prefix: str, stage: str, now: pd.Timestamp) -> str:
    """A new key for rows rejected at ``stage`` at time ``now``."""
    return (
        f"{quarantine_prefix}/stage={encode_symbol(stage)}/day={now:%Y-%m-%d}/"
        f"{new_version()}.parquet"
    )


# ---------------------------------------------------------------------- frames


def to_parquet(df: pd.DataFrame, key: Sequence[str] | None = None) -> bytes:
    """``df`` as Parquet (zstd); ``key``, the table's key, is kept in the file's metadata."""
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


def from_parquet(data: bytes) -> pd.DataFrame:
    """The frame :func:`to_parquet` wrote (its key, when named, in ``frame.attrs["key"]``)."""
    table = pq.read_table(io.BytesIO(data))
    frame = table.to_pandas()
    key = (table.schema.metadata or {}).get(_KEY_META)
    if key is not None:
        frame.attrs["key"] = key.decode().split(",")
    return frame


def stamp(rows: pd.DataFrame, version: str) -> pd.DataFrame:
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


def sort_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows in the order files hold them: by symbol, then date."""
    return rows.sort_values(["symbol", date_column(rows)]).reset_index(drop=True)


def naive_day(values: pd.Series) -> pd.Series:
    """Timestamps as tz-naive days (UTC days for tz-aware ones, e.g. news ``published_at``)."""
    values = pd.to_datetime(values)
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values.dt.normalize()


def date_column(df: pd.DataFrame) -> str:
    """The column a table is partitioned and read by: ``date`` (``published_at`` for news).

    Raises:
        StoreError: the frame has neither.
    """
    for name in ("date", "published_at"):
        if name in df.columns:
            return name
    raise StoreError(f"a table needs a 'date' or 'published_at' column; got {list(df.columns)}")


def key_hash(df: pd.DataFrame, key: Sequence[str]) -> np.ndarray:
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


def row_digest(df: pd.DataFrame, position: int, key: Sequence[str]) -> str:
    """16 hex digits identifying the non-key values of one row (dtype-independent).

    Two rows with equal digests hold equal values in the sense of :func:`merge_rows`
    (``==``, NaN equal to NaN), so the last row of a partition can be compared with a new
    copy of it from the object name alone.
    """
    return row_digests(df, [position], key)[0]


def row_digests(df: pd.DataFrame, positions: Iterable[int], key: Sequence[str]) -> list[str]:
    """:func:`row_digest` of several rows (the columns are converted once)."""
    columns = [c for c in sorted(df.columns) if c not in key and c != VERSION_COLUMN]
    arrays = [(c, df[c].to_numpy()) for c in columns]
    return [
        hashlib.blake2b(
            "|".join(f"{c}={_digest_value(values[i])}" for c, values in arrays).encode(),
            digest_size=8,
        ).hexdigest()
        for i in positions
    ]


# ---------------------------------------------------------------------- merges


@dataclass(frozen=True)
class Merged:
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
    horizon: str = NO_HORIZON


def rows_after(current: Partition, rows: pd.DataFrame, key: Sequence[str]) -> pd.DataFrame | None:
    """The rows to append as a delta, or None when the partition must be merged instead.

    Appending is right when every row is dated after the partition's last day, except a copy
    of that last day's row whose digest equals the one in the object name (the overlap day
    of an incremental fetch, unchanged).
    """
    if current.overlapping:  # merge it: the next write folds concurrent copies away
        return None
    days = naive_day(rows["date"]).to_numpy()
    last = current.last.to_datetime64()
    if (days < last).any():
        return None
    at_last = np.flatnonzero(days == last)
    if len(at_last):
        if current.tail is None or row_digest(rows, int(at_last[0]), key) != current.tail:
            return None
        return rows[days > last]
    return rows


def decide(
    slot: Slot,
    current: Partition | None,
    rows: pd.DataFrame,
    key: Sequence[str],
    atomic: bool,
    force: bool,
    max_deltas: int,
) -> Merged | None:
    """What one partition's write is, from the object names alone; None: merge (read it).

    A new partition is written whole; rows that only add days after the partition's last
    one (its last row unchanged) are appended as a delta, until ``max_deltas``; anything
    else needs the partition's rows.
    """
    symbol, year = slot
    if force:
        return None
    if current is None or not current.live:
        return Merged(symbol, year, rows, len(rows), 0, False, delta=atomic) if len(rows) else None
    if list(key) != _DAILY_KEY or "date" not in rows.columns or rows.empty:
        return None
    after = rows_after(current, rows, key)
    if after is not None and (atomic or current.deltas < max_deltas):
        # no GET: only days after the partition's last one, whose stored row the object
        # name proves unchanged
        return Merged(symbol, year, after if len(after) else None, len(after), 0, False, delta=True)
    return None


def merge_rows(
    slot: Slot,
    current: Partition,
    old: pd.DataFrame,
    rows: pd.DataFrame,
    key: Sequence[str],
    frozen: set[tuple[object, ...]],
    atomic: bool,
    force: bool,
    horizon: str,
) -> Merged:
    """Merge a partition's stored rows ``old`` (its live files ``current``, read) with ``rows``.

    The new row wins per key; a new base is merged up to ``horizon``. ``force`` (or live files
    that overlap, unless ``atomic``) writes a new base even when ``rows`` change nothing.
    ``atomic``: only the new and changed rows, as a delta. A changed key in ``frozen`` (expected
    unchanged) sets ``mismatch``.
    """
    symbol, year = slot
    key = list(key)
    after = None
    if key == _DAILY_KEY and "date" in rows.columns and not force and len(rows):
        after = rows_after(current, rows, key)
    # a merge of overlapping files writes them as one even when the rows add nothing
    rewrite = (force or current.overlapping) and not atomic
    if rows.empty:
        return Merged(symbol, year, old if rewrite else None, 0, 0, False, horizon=horizon)
    if after is not None and len(after):  # compaction: the new days follow the stored ones
        merged = pd.concat([old, after], ignore_index=True)
        return Merged(symbol, year, merged, len(after), 0, False, horizon=horizon)
    # vectorised key matching: the merge runs once per partition of a daily run
    old_keys, new_keys = key_hash(old, key), key_hash(rows, key)
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
        return Merged(symbol, year, old if rewrite else None, 0, 0, False, horizon=horizon)
    changed = set(rows.loc[differs, key].itertuples(index=False, name=None))
    mismatch = bool(frozen & changed)
    if atomic:  # only what changes, into the one object readers see whole or not at all
        return Merged(symbol, year, rows[~same], n_new, int(differs.sum()), mismatch, delta=True)
    keep = old[~np.isin(old_keys, new_keys)]
    merged = pd.concat([keep, rows], ignore_index=True)
    return Merged(symbol, year, merged, n_new, int(differs.sum()), mismatch, horizon=horizon)
