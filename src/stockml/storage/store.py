"""The store: partitioned tables, concurrency-safe upserts, quarantine, over one S3 bucket.

:class:`Store` reads and writes the layout of :mod:`stockml.storage.layout` (object names,
base and delta files, row versions, which files readers see) through the object I/O of
:mod:`stockml.storage.objects`. This module is the algorithm between them: what a write LISTs,
reads, PUTs and deletes, and in which order, so that concurrent writers lose nothing.

One upsert, per (symbol, year) partition of its rows:

* Appending (tables keyed by ``(symbol, date)``): rows that only add days after the
  partition's last one go into the ONE shared delta object of the write; no base is read.
* Merging (anything else, or a partition with ``MAX_DELTAS`` live deltas: compaction): the
  upsert reads the partition's live files as a second listing shows them, merges the new rows
  (the new row wins per key) and PUTs the result as a NEW base. Its horizon is the newest
  version in the first listing.
* ``atomic=True`` puts every new or changed row of every partition into ONE shared object
  (readers see all of it or none: a symbol's re-adjusted history across years);
  :meth:`Store.compact` then merges the partitions. (A merge of one of those partitions
  racing it can hide that part for a moment; the writer's check then writes it again.)

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
   any other file there is newer than its own (:func:`~stockml.storage.layout.conflicts`),
   writes again from a fresh listing: a new base merged with its earlier file, hidden or
   not. Its upsert returns only once such a check finds nothing newer; without a concurrent
   writer nothing is, as versions are chosen newer than all the writer listed. A writer
   killed before that check made a write that did not complete: the caller's retry (SQS
   redelivery, a re-run) writes it again.
3. The first check also flags a partition where copies of a day now overlap the writer's
   rows; the next round merges them into one base, so a run that appended days another
   run had just stored leaves one base, not copies waiting for the next write.
4. Deletes. Only after its check passes does a writer delete, in its partitions, the files
   hidden by a *safe* base (:func:`~stockml.storage.layout.hidden_by_safe_base`): one that no
   file of its partition is newer than in the LIST (a shared object once every (symbol, year)
   it holds is hidden so). Such a base passes its writer's check as of that LIST, so no merge
   can hide it without reading it, and it holds the hidden files' rows (a base whose writer
   died before its check is never trusted until a newer merge supersedes it). A reader or
   merge whose GET finds a file gone (a concurrent merge deleted it) lists again.

Contention costs rounds, not rows: each round is a LIST, GETs and PUTs of the conflicting
partitions, after a random pause (up to ``_ATTEMPTS`` rounds, then :class:`StoreError`: the
write did not complete, nothing stored is lost). Without contention a write costs one more
LIST of its partitions than a write without the check would (README: ingestion figures).

Crash safety (write new, then hide, then delete; never delete first; a single S3 PUT is
atomic): a run that dies before a PUT completes leaves the store as it was; one that dies
after leaves files that readers resolve as above (hidden, or folded) and that a later write
deletes.

A write cut short (a crash, an S3 error) leaves each symbol's days stored up to a point, never
a later day without an earlier one: its PUTs go in date order, the shared delta object (rows
after each partition's last day) first, then the new bases year by year, a year's only once
every earlier year's are PUT. An incremental re-run fetches from each symbol's last stored
day, so it completes the write; had a later year been stored while an earlier one failed, no
re-run would ever fetch the missing year again.

The limits of the algorithm (``MAX_DELTAS``, ``_ATTEMPTS``, ``_RETRY_PAUSE_S``) are
attributes of the :mod:`stockml.storage` package, read at each use, so that a test or a
benchmark sets them in one place.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from functools import partial
from itertools import groupby
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

import stockml.storage as limits
from stockml.errors import StoreError
from stockml.s3 import encode_symbol
from stockml.schemas import KEY, coerce_bars, empty_bars, validate_bars
from stockml.settings import StoreSettings
from stockml.storage.layout import (
    NO_HORIZON,
    SHARED_DIR,
    VERSION_COLUMN,
    Listing,
    Merged,
    PartFile,
    Partition,
    Slot,
    base_key,
    conflicts,
    date_column,
    decide,
    fold,
    from_parquet,
    hidden_by_safe_base,
    is_shared_key,
    merge_rows,
    naive_day,
    new_version,
    parse_key,
    parse_keys,
    partitions,
    quarantine_key,
    readable,
    shared_key,
    shared_parts,
    sort_rows,
    stamp,
    to_parquet,
)
from stockml.storage.objects import DEFAULT_WORKERS, ObjectGoneError, S3Objects

logger = logging.getLogger(__name__)

T = TypeVar("T")

# up to this many symbols (or year x symbol folders), list their folders, not the table
_FEW_SYMBOLS = 20
_FEW_FOLDERS = 64
_SHARED_CACHE = 256


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


def _pause(attempt: int) -> None:
    """A short random wait before another attempt, so that racing writers drift apart."""
    time.sleep(random.uniform(0, limits._RETRY_PAUSE_S * 2 ** min(attempt, 5)))  # noqa: S311


class Store:
    """Tables and objects in one S3 bucket; see the module docstring for the algorithm.

    The object methods (``put_bytes``, ``get_bytes``, ``list_keys``...) are those of its
    :class:`~stockml.storage.objects.S3Objects`, ``objects``.
    """

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
        max_workers: int = DEFAULT_WORKERS,
    ) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        self.raw_prefix = raw_prefix.strip("/")
        self.features_prefix = features_prefix.strip("/")
        self.quarantine_prefix = quarantine_prefix.strip("/")
        self.models_prefix = models_prefix.strip("/")
        self.news_prefix = news_prefix.strip("/")
        self.max_workers = max_workers
        self.objects = S3Objects(bucket, endpoint_url, region, max_workers)
        # shared delta objects by key: a key is written once and never rewritten, so a cached
        # copy is never stale
        self._shared_frames: dict[str, pd.DataFrame] = {}
        # shared delta key -> its PartFiles, and the row positions of each (symbol, year)
        self._shared_index: dict[str, tuple[list[PartFile], dict[Slot, np.ndarray]]] = {}

    @classmethod
    def from_settings(cls, settings: StoreSettings, max_workers: int = DEFAULT_WORKERS) -> Store:
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
        """:meth:`S3Objects.put_bytes <stockml.storage.objects.S3Objects.put_bytes>`."""
        self.objects.put_bytes(key, data)

    def put_bytes_if(self, key: str, data: bytes, etag: str | None = None) -> str | None:
        """:meth:`S3Objects.put_bytes_if <stockml.storage.objects.S3Objects.put_bytes_if>`."""
        return self.objects.put_bytes_if(key, data, etag)

    def get_bytes(self, key: str) -> bytes:
        """:meth:`S3Objects.get_bytes <stockml.storage.objects.S3Objects.get_bytes>`."""
        return self.objects.get_bytes(key)

    def get_object(self, key: str) -> tuple[bytes, str]:
        """:meth:`S3Objects.get_object <stockml.storage.objects.S3Objects.get_object>`."""
        return self.objects.get_object(key)

    def list_keys(self, prefix: str) -> list[str]:
        """:meth:`S3Objects.list_keys <stockml.storage.objects.S3Objects.list_keys>`."""
        return self.objects.list_keys(prefix)

    def list_folders(self, prefix: str) -> list[str]:
        """:meth:`S3Objects.list_folders <stockml.storage.objects.S3Objects.list_folders>`."""
        return self.objects.list_folders(prefix)

    def put_folder(self, local_dir: str | Path, prefix: str) -> list[str]:
        """:meth:`S3Objects.put_folder <stockml.storage.objects.S3Objects.put_folder>`."""
        return self.objects.put_folder(local_dir, prefix)

    def get_folder(self, prefix: str) -> dict[str, bytes]:
        """:meth:`S3Objects.get_folder <stockml.storage.objects.S3Objects.get_folder>`."""
        return self.objects.get_folder(prefix)

    def delete_keys(self, keys: Sequence[str]) -> None:
        """:meth:`S3Objects.delete_keys <stockml.storage.objects.S3Objects.delete_keys>`."""
        self.objects.delete_keys(keys)

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
        for (symbol, _), part in readable(partitions(parts)).items():
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
            state = readable(partitions(self._parts(prefix)))
            dirty = [p for p in state.values() if p.overlapping]
            exact = dict(
                zip(map(id, dirty), self.objects.map(self._read_partition, dirty), strict=True)
            )
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
            state = readable(
                partitions(self._parts(prefix, symbols, since_year=lo.year if lo else None))
            )
            wanted = [
                p
                for p in state.values()
                if (lo is None or p.last >= lo) and (hi is None or p.first <= hi)
            ]
            return self.objects.map(self._read_partition, wanted)

        frames = self._retrying(read, f"read {prefix}")
        if not frames:
            return pd.DataFrame()
        frame = pd.concat(frames, ignore_index=True).drop(columns=VERSION_COLUMN)
        column = date_column(frame)
        day = naive_day(frame[column])
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
        column = date_column(df)
        new = df.drop_duplicates(subset=key, keep="last").reset_index(drop=True)
        days = naive_day(new[column])
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
        state = readable(partitions(self._parts(prefix, symbols)))
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
        key = quarantine_key(self.quarantine_prefix, stage, now)
        self.put_bytes(key, to_parquet(frame))
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
        frames = self.objects.map(lambda k: from_parquet(self.get_bytes(k)), keys)
        return (
            pd.concat(frames, ignore_index=True)
            .sort_values("quarantined_at")
            .reset_index(drop=True)
        )

    # ------------------------------------------------------------------ listing and reading

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
            for key_parts in self.objects.map(
                self._shared_parts, self.list_keys(f"{prefix}/{SHARED_DIR}/")
            )
            for p in key_parts
            if wanted is None or p.symbol in wanted
        ]
        if since_year is None and not latest and (wanted is None or len(wanted) > _FEW_SYMBOLS):
            # one paginated LIST (1000 keys a page) beats one LIST per folder
            return Listing(shared + parse_keys(prefix, self.list_keys(f"{prefix}/"), wanted))
        years = [y for y in self._years(prefix) if since_year is None or y >= since_year]
        if not latest or wanted is None:
            return Listing(shared + self._list_years(prefix, years, wanted), since_year)
        parts = list(shared)
        for i, year in enumerate(sorted(years, reverse=True)):
            parts += self._list_years(prefix, [year], wanted)
            # every year >= ``year`` is listed: their partitions' states are complete
            done = {s for (s, y) in readable(partitions(parts)) if y >= year}
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
        keys = [k for listed in self.objects.map(self.list_keys, prefixes) for k in listed]
        return parse_keys(prefix, keys, wanted)

    def _shared_frame(self, key: str) -> pd.DataFrame:
        frame = self._shared_frames.get(key)
        if frame is None:
            frame = from_parquet(self.get_bytes(key))
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
        if not is_shared_key(key):
            return []
        try:
            frame = self._shared_frame(key)
        except ObjectGoneError:
            # deleted since it was listed: every row of it was hidden by a newer base
            return []
        parts, runs = shared_parts(key, frame)
        self._shared_index[key] = (parts, runs)
        return parts

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
            frame = from_parquet(self.get_bytes(part.key))
        if VERSION_COLUMN not in frame.columns:  # written before rows carried versions
            frame[VERSION_COLUMN] = part.version
        return frame

    def _read_partition(self, partition: Partition) -> pd.DataFrame:
        """The rows readers see in one partition: its live files, copies of a key folded."""
        frames = self.objects.map(self._read_part, partition.live)
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        if partition.overlapping:
            key = frames[0].attrs.get("key") or ["symbol", date_column(frame)]
            frame = fold(frame, key).reset_index(drop=True)
            frame.attrs["key"] = key
        return frame

    def _retrying(self, fn: Callable[[], T], what: str) -> T:
        """``fn()`` (a LIST, then GETs) again while a concurrent merge deletes what it listed."""
        for attempt in range(limits._ATTEMPTS):
            try:
                return fn()
            except ObjectGoneError:
                _pause(attempt)
        raise StoreError(
            f"s3://{self.bucket}: {what}: files kept changing ({limits._ATTEMPTS} tries)"
        )

    # ------------------------------------------------------------------ writing

    def _write_slots(
        self,
        prefix: str,
        groups: Mapping[Slot, pd.DataFrame],
        key: list[str],
        frozen: set[tuple[object, ...]],
        parts: Listing | None,
        atomic: bool = False,
        force: bool = False,
    ) -> tuple[dict[Slot, Merged], set[str], int]:
        """Upsert each partition's rows: merge, PUT, LIST again, GC; again where in conflict.

        One round: list (or take ``parts``), merge each partition with its rows, PUT the new
        files (bases, one shared delta object), then LIST the partitions written and check
        them with :func:`~stockml.storage.layout.conflicts`. Partitions without conflict are
        done, and the files their new bases hide are deleted; the others, and (in the first
        round) those where a concurrent writer's copies of a day now overlap ours, go round
        again from a fresh listing, writing a new base.

        Returns:
            Each partition's merge in the first round that reached it (its counts: what the
            store lacked then), the symbols left untouched because an expected-unchanged row
            differed, and the number of rounds.
        """
        pending = dict(groups)
        first: dict[Slot, Merged] = {}
        mismatched: set[str] = set()
        mine: dict[Slot, PartFile] = {}  # our file in each conflicted partition
        for attempt in range(limits._ATTEMPTS):
            again = attempt > 0 and bool(mine)
            # after a conflict: a new base, merged with our previous file even if a merge hid
            # it (our rows may be nowhere else)
            atomic_now, force_now = atomic and not again, force or again
            try:
                existing = self._listing_for(prefix, pending, parts if attempt == 0 else None)
                state = partitions(existing)
                decided = {
                    slot: decide(
                        slot,
                        state.get(slot),
                        rows,
                        key,
                        atomic_now,
                        force_now,
                        max_deltas=limits.MAX_DELTAS,
                    )
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
                merged = [d for d in decided.values() if d is not None] + self.objects.map(
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
            f"{sorted(pending)[:5]} ({limits._ATTEMPTS} rounds); nothing is lost, run the write "
            "again"
        )

    def _check_listing(self, prefix: str, slots: Iterable[Slot]) -> dict[Slot, Partition]:
        """The files of ``slots`` right after our PUTs, listed in the order the check needs.

        ``_delta/`` first (and the shared objects' GETs), the year folders after: a file that
        vanishes in between was hidden by a base PUT before it vanished, so the year folders'
        LIST, made later, shows that base (a base's successors sort after it in its folder).
        The LISTs follow our PUT closely: the fewer files concurrent writers PUT after ours
        (harmless, but newer), the fewer partitions :func:`~stockml.storage.layout.conflicts`
        flags.
        """
        symbols = {symbol for symbol, _ in slots}
        years = sorted({year for _, year in slots})
        shared = [
            p
            for parts in self.objects.map(
                self._shared_parts, self.list_keys(f"{prefix}/{SHARED_DIR}/")
            )
            for p in parts
            if p.symbol in symbols
        ]
        year_keys = self.objects.map(self.list_keys, [f"{prefix}/year={y}/" for y in years])
        listed = parse_keys(prefix, (k for keys in year_keys for k in keys), symbols)
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
        state: Mapping[Slot, Partition],
        horizons: Mapping[Slot, str],
        key: list[str],
        frozen: set[tuple[object, ...]],
        atomic: bool,
        force: bool,
        extras: Mapping[Slot, PartFile],
    ) -> Merged:
        """Read one partition's live files (``state``) and merge its new rows into them.

        The new base hides the files up to ``horizons[slot]`` (from the first listing).
        ``force``: write a new base even when nothing changes; ``extras``: a file per
        partition to merge in even if a base hides it (our own earlier write, after a conflict).
        """
        slot, rows = item
        symbol, year = slot
        current = state.get(slot) or Partition(live=(), files=())
        horizon = horizons.get(slot, NO_HORIZON)
        extra = extras.get(slot)
        if extra is not None:
            horizon = max(horizon, extra.version)
            if extra not in current.live:
                try:
                    self._read_part(extra)
                    current = Partition(live=(*current.live, extra), files=current.files)
                except ObjectGoneError:  # deleted: a base that holds it hid it
                    pass
        if not current.live:
            if rows.empty:
                return Merged(symbol, year, None, 0, 0, False)
            return Merged(symbol, year, rows, len(rows), 0, False, delta=atomic)
        old = self._read_partition(current)
        return merge_rows(slot, current, old, rows, key, frozen, atomic, force, horizon)

    def _put(
        self,
        prefix: str,
        todo: Sequence[Merged],
        key: Sequence[str],
        state: Mapping[Slot, Partition],
    ) -> dict[Slot, PartFile]:
        """PUT the merged partitions: all the deltas as ONE shared object, then one new base each.

        Every new file's version is newer than every file listed in its partitions, and each
        row written for the first time (or changed) gets that version. Nothing is deleted here.
        A failed PUT stops the write: later years' bases are not PUT.
        """

        def write_base(m: Merged) -> tuple[Slot, PartFile]:
            assert m.frame is not None
            current = state.get((m.symbol, m.year))
            version = new_version(current.version if current else None)
            rows = stamp(sort_rows(m.frame), version)
            path = base_key(prefix, m.symbol, m.year, version, rows, m.horizon)
            self.put_bytes(path, to_parquet(rows, key))
            part = parse_key(prefix, path)
            assert part is not None
            return (m.symbol, m.year), part

        written: dict[Slot, PartFile] = {}
        deltas = [m for m in todo if m.delta]
        if deltas:
            slots = [(m.symbol, m.year) for m in deltas]
            # newer than every file of every partition it appends to
            after = max((state[s].version for s in slots if s in state), default=None)
            version = new_version(after)
            rows = stamp(
                sort_rows(pd.concat([m.frame for m in deltas], ignore_index=True)), version
            )
            path = shared_key(prefix, version, rows)
            data = to_parquet(rows, key)
            self.put_bytes(path, data)
            self._shared_frames[path] = from_parquet(data)
            written.update(
                {
                    (p.symbol, p.year): p
                    for p in self._shared_parts(path)
                    if (p.symbol, p.year) in slots
                }
            )
        # the bases year by year, each year's once the previous year's are all PUT (see the
        # module docstring: a write cut short leaves each symbol's days stored up to a point)
        bases = sorted((m for m in todo if not m.delta), key=lambda m: m.year)
        for _, year in groupby(bases, key=lambda m: m.year):
            written.update(self.objects.map(write_base, list(year)))
        return written

    def _collect(
        self, prefix: str, done: Mapping[Slot, PartFile], after: Mapping[Slot, Partition]
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
                if hidden_by_safe_base(f, state):
                    if f.shared:
                        shared.add(f.key)
                    else:
                        stale.append(f.key)
        self.delete_keys(stale + self._dead_shared(prefix, shared, after))

    def _dead_shared(
        self, prefix: str, keys: Iterable[str], known: Mapping[Slot, Partition]
    ) -> list[str]:
        """The shared delta objects among ``keys`` whose every (symbol, year) part a safe base
        hides.

        Parts of partitions ``known`` does not cover (another batch's symbols, older years)
        are checked with one more listing of those symbols, only for objects whose other parts
        are all hidden.
        """

        def hidden(p: PartFile, state: Mapping[Slot, Partition]) -> bool:
            slot = (p.symbol, p.year)
            return slot in state and hidden_by_safe_base(p, state[slot])

        held = {key: self._shared_parts(key) for key in keys}
        candidates = {
            key: [p for p in parts if (p.symbol, p.year) not in known]
            for key, parts in held.items()
            if parts and all(hidden(p, known) for p in parts if (p.symbol, p.year) in known)
        }
        others = sorted({p.symbol for parts in candidates.values() for p in parts})
        more = partitions(self._parts(prefix, others)) if others else {}
        return [key for key, unknown in candidates.items() if all(hidden(p, more) for p in unknown)]
