"""The prediction log in the store: the API's JSON lines, compacted to Parquet by as-of date.

Layout under ``<predictions_prefix>/``::

    _incoming/as_of=<D>/<writer>-<seq>.jsonl   written once each by the API (stockml.predlog)
    as_of=<D>/part-<digest>.parquet            compacted by the monitor

A part holds the rows of the incoming objects it **covers**, each row with its object's key
(column ``source``); ``<digest>`` is a digest of the keys it covers. Compacting an as-of date:

1. list the date's incoming objects, THEN its parts (the order matters, see below);
2. when one part covers every incoming object and no part is redundant: nothing to do (a
   re-run writes nothing);
3. otherwise read the parts and the incoming objects none covers, drop copies of a record
   (``record_id``), and write ONE part covering all of their sources. Two compactions that see
   the same objects write the same bytes under the same key;
4. then delete the parts whose sources are a subset of the new part's, and the incoming
   objects it covers.

Nothing is lost and nothing is read twice, whatever runs at once (the API's writers, two
monitors): an incoming object is deleted only after a part covering it exists, a part only
after a part covering a superset of its sources exists, so every record is always in a live
object; readers and compactions drop copies by ``record_id``. A reader lists the incoming
objects before the parts: an object deleted after the first listing was covered by a part
written before that deletion, so the second listing shows it; a GET that finds an object gone
lists again.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stockml.errors import StoreError
from stockml.predlog import incoming_prefix

logger = logging.getLogger(__name__)

COLUMNS = [
    "record_id",
    "request_id",
    "served_at",
    "endpoint",
    "symbol",
    "model_version",
    "model",
    "as_of",
    "horizon",
    "target_date",
    "last_close",
    "predicted_close",
    "predicted_log_return",
    "lower",
    "upper",
    "level",
    "data_age_sessions",
    "stale",
    "source",
]
_DATE_RE = re.compile(r"as_of=(\d{4}-\d{2}-\d{2})/")
_ATTEMPTS = 5
_WORKERS = 8
T = TypeVar("T")
R = TypeVar("R")


def _day(key: str) -> date | None:
    match = _DATE_RE.search(key)
    return date.fromisoformat(match.group(1)) if match else None


def part_key(prefix: str, day: date, sources: Iterable[str]) -> str:
    """The key of the part covering ``sources`` (a digest of their sorted keys)."""
    digest = hashlib.sha256("\n".join(sorted(sources)).encode()).hexdigest()[:24]
    return f"{prefix.strip('/')}/as_of={day.isoformat()}/part-{digest}.parquet"


def empty_log() -> pd.DataFrame:
    return _typed(pd.DataFrame({c: [] for c in COLUMNS}))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.reindex(columns=COLUMNS)
    for column in ("as_of", "target_date"):
        out[column] = pd.to_datetime(out[column])
    for column in ("horizon",):
        out[column] = out[column].astype("int64")
    for column in ("last_close", "predicted_close", "predicted_log_return", "lower", "upper"):
        out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
    out["level"] = pd.to_numeric(out["level"], errors="coerce").astype("float64")
    out["data_age_sessions"] = pd.to_numeric(out["data_age_sessions"], errors="coerce")
    out["stale"] = out["stale"].astype(bool)
    for column in ("record_id", "request_id", "served_at", "endpoint", "symbol"):
        out[column] = out[column].astype(str)
    for column in ("model_version", "model", "source"):
        out[column] = out[column].astype(str)
    return out


def parse_incoming(key: str, data: bytes) -> pd.DataFrame:
    """The records of one incoming JSON-lines object (a line that does not parse is skipped
    and logged: the other records are kept)."""
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            logger.warning("prediction log %s: line %d is not JSON, skipped", key, number)
            continue
        if isinstance(record, dict) and record.get("record_id"):
            rows.append(record)
    frame = pd.DataFrame(rows) if rows else pd.DataFrame({c: [] for c in COLUMNS})
    frame["source"] = key
    return _typed(frame)


_SOURCES_META = b"stockml.sources"


def _to_parquet(frame: pd.DataFrame, sources: frozenset[str]) -> bytes:
    """The part's bytes; the keys it covers go in the schema metadata (an incoming object
    whose lines were all unreadable is covered without a row)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = {**(table.schema.metadata or {}), _SOURCES_META: json.dumps(sorted(sources))}
    buf = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(metadata), buf, compression="zstd")
    return buf.getvalue()


def _from_parquet(data: bytes) -> tuple[pd.DataFrame, frozenset[str]]:
    table = pq.read_table(io.BytesIO(data))
    raw = (table.schema.metadata or {}).get(_SOURCES_META)
    frame = _typed(table.to_pandas())
    sources = frozenset(json.loads(raw)) if raw else frozenset(frame["source"].unique().tolist())
    return frame, sources


def _listing(
    store: Any, prefix: str, day: date | None = None
) -> tuple[dict[date, list[str]], dict[date, list[str]]]:
    """``({as_of: incoming keys}, {as_of: part keys})`` of every date (or one), incoming
    listed FIRST (see the module docstring)."""
    prefix = prefix.strip("/")
    parts_prefix = f"{prefix}/as_of=" if day is None else f"{prefix}/as_of={day.isoformat()}/"
    incoming: dict[date, list[str]] = defaultdict(list)
    for key in store.list_keys(incoming_prefix(prefix, day)):
        found = _day(key)
        if found is not None and key.endswith(".jsonl"):
            incoming[found].append(key)
    parts: dict[date, list[str]] = defaultdict(list)
    for key in store.list_keys(parts_prefix):
        found = _day(key)
        if found is not None and key.endswith(".parquet"):
            parts[found].append(key)
    return incoming, parts


def _parallel(fn: Callable[[T], R], items: list[T]) -> list[R]:
    """``fn`` over ``items`` on a few threads (S3 requests wait on the network)."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(_WORKERS, len(items))) as pool:
        return list(pool.map(fn, items))


def _read_day(
    store: Any, incoming: list[str], parts: list[str]
) -> tuple[pd.DataFrame, dict[str, frozenset[str]]]:
    """Rows of one date (copies dropped) and the sources each part covers.

    Raises:
        StoreError: an object is gone (a concurrent compaction): the caller lists again.
    """
    read = _parallel(lambda key: _from_parquet(store.get_bytes(key)), parts)
    covers = {key: sources for key, (_frame, sources) in zip(parts, read, strict=True)}
    frames = [frame for frame, _sources in read]
    covered = frozenset().union(*covers.values())
    uncovered = [key for key in incoming if key not in covered]
    frames += _parallel(lambda key: parse_incoming(key, store.get_bytes(key)), uncovered)
    rows = pd.concat(frames, ignore_index=True) if frames else empty_log()
    rows = rows.drop_duplicates("record_id").sort_values("record_id").reset_index(drop=True)
    return rows, covers


def compact_day(
    store: Any,
    prefix: str,
    day: date,
    listing: tuple[list[str], list[str]] | None = None,
) -> dict[str, int]:
    """Compact one as-of date's log (see the module docstring); idempotent.

    Args:
        listing: the date's ``(incoming keys, part keys)`` when the caller listed them.

    Returns:
        ``{"written": parts written (0 or 1), "deleted": objects deleted, "records": n}``.
    """
    for attempt in range(_ATTEMPTS):
        if listing is None or attempt:
            incoming, parts = _listing(store, prefix, day)
            listing = (incoming.get(day, []), parts.get(day, []))
        day_incoming, day_parts = sorted(listing[0]), sorted(listing[1])
        try:
            rows, covers = _read_day(store, day_incoming, day_parts)
        except StoreError:
            if attempt == _ATTEMPTS - 1:
                raise
            continue  # an object went away under a concurrent compaction: list again
        # every part's sources and every listed incoming object: one part covers them all
        sources = frozenset().union(*covers.values(), day_incoming)
        key = part_key(prefix, day, sources)
        written = 0
        if key not in covers:
            store.put_bytes(key, _to_parquet(rows, sources))
            written = 1
        # only now, with the covering part written: the objects it supersedes
        stale = [k for k in day_parts if k != key] + day_incoming
        if stale:
            store.delete_keys(stale)
        return {"written": written, "deleted": len(stale), "records": len(rows)}
    raise AssertionError("unreachable")


def compact(store: Any, prefix: str) -> dict[str, Any]:
    """Compact every as-of date that has incoming objects or redundant parts.

    Returns:
        ``{"days": n, "parts_written": n, "objects_deleted": n, "records": n}``.
    """
    incoming, parts = _listing(store, prefix)
    days = sorted(set(incoming) | {d for d, keys in parts.items() if len(keys) > 1})
    totals = {"days": 0, "parts_written": 0, "objects_deleted": 0, "records": 0}
    results = _parallel(
        lambda day: compact_day(store, prefix, day, (incoming.get(day, []), parts.get(day, []))),
        days,
    )
    for done in results:
        totals["days"] += 1
        totals["parts_written"] += done["written"]
        totals["objects_deleted"] += done["deleted"]
        totals["records"] += done["records"]
    return totals


def read_log(
    store: Any, prefix: str, start: date | None = None, end: date | None = None
) -> pd.DataFrame:
    """Every logged record with ``start <= as_of <= end`` (compacted or not), each once."""
    for attempt in range(_ATTEMPTS):
        incoming, parts = _listing(store, prefix)
        days = sorted(
            d
            for d in set(incoming) | set(parts)
            if (start is None or d >= start) and (end is None or d <= end)
        )
        try:
            pairs = [(incoming.get(d, []), parts.get(d, [])) for d in days]
            frames = _parallel(lambda pair: _read_day(store, *pair)[0], pairs)
        except StoreError:
            if attempt == _ATTEMPTS - 1:
                raise
            continue
        if not frames:
            return empty_log()
        rows = pd.concat(frames, ignore_index=True).drop_duplicates("record_id")
        return rows.sort_values(["as_of", "symbol", "model", "horizon", "record_id"]).reset_index(
            drop=True
        )
    raise AssertionError("unreachable")


def served_forecasts(log: pd.DataFrame) -> pd.DataFrame:
    """One row per served (model version, symbol, as-of date, model, horizon): what the API
    said for it (a forecast is a function of them; the first served copy is kept), with how
    many requests were served it (``requests``)."""
    if log.empty:
        return log.assign(requests=pd.Series(dtype="int64"))
    keys = ["model_version", "symbol", "as_of", "model", "horizon"]
    ordered = log.sort_values(["served_at", "record_id"])
    counts = ordered.groupby(keys).size().rename("requests")
    first = ordered.drop_duplicates(keys, keep="first").set_index(keys)
    return first.join(counts).reset_index()
