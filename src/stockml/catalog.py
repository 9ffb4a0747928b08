"""The data lake in the Glue Data Catalog, so that Athena (or any Glue-aware engine) queries it.

For each partitioned table of the store (``raw/``, ``features/``), :func:`register_tables`
creates two Glue tables in one database (awswrangler's catalog API):

* ``<table>``: the partition files, ``<prefix>/year=<Y>/symbol=<S>/``, with **partition
  projection** (Athena computes the partition locations from the table's properties, no
  crawler and no ``MSCK REPAIR``): ``year`` an integer range, ``symbol_key`` an enum of the
  stored symbols as they appear in the keys (Hive-escaped: ``^GSPC`` -> ``%5EGSPC``). The
  ``symbol`` column holds the ticker itself;
* ``<table>_delta``: the shared delta objects under ``<prefix>/_delta/`` (the newest daily
  appends, not yet folded into the partitions; :mod:`stockml.storage.layout`).

The store's readers see, per ``(symbol, date)``, the copy with the newest **row version**
(the ``_version`` column every stored row carries: the version of the write that gave it its
values, kept through merges; ties are copies of one write, equal). Athena reads every file,
superseded ones included, so the freshest view is that rule in SQL (:data:`LATEST_SQL`,
README "Querying the data lake"). Column types come from the newest partition file.

The projection's years and symbols are those stored when this runs: run it again (``stockml
catalog``) after adding symbols or at the turn of a year. Re-running replaces the tables.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

import awswrangler as wr
import boto3
import pandas as pd

from stockml.errors import StoreError
from stockml.s3 import encode_symbol
from stockml.storage import Store
from stockml.storage.layout import SHARED_DIR, VERSION_COLUMN

logger = logging.getLogger(__name__)

# the partition key that names the symbol folder; ``symbol`` is the data column
SYMBOL_KEY = "symbol_key"
# the newest row per (symbol, date) over a table and its deltas; {database}, {table}, {columns}
LATEST_SQL = """\
SELECT {columns} FROM (
  SELECT *, row_number() OVER (PARTITION BY symbol, date ORDER BY "_version" DESC) AS newest
  FROM (
    SELECT {columns}, "_version" FROM "{database}"."{table}"
    UNION ALL
    SELECT {columns}, "_version" FROM "{database}"."{table}_delta"
  )
) WHERE newest = 1"""


@dataclass(frozen=True)
class TableInfo:
    """One registered table: how many symbols, the projected years, how many columns."""

    symbols: int
    first_year: int
    last_year: int
    columns: int


@dataclass(frozen=True)
class CatalogReport:
    """What :func:`register_tables` registered, by table name."""

    database: str
    tables: dict[str, TableInfo] = field(default_factory=dict)


@contextmanager
def _glue_endpoint(endpoint_url: str | None) -> Iterator[None]:
    """awswrangler's Glue calls go to ``endpoint_url`` (moto, LocalStack) inside the block."""
    previous = wr.config.glue_endpoint_url
    if endpoint_url:
        wr.config.glue_endpoint_url = endpoint_url
    try:
        yield
    finally:
        wr.config.glue_endpoint_url = previous


def register_tables(
    store: Store,
    database: str = "stockml",
    tables: tuple[str, ...] | None = None,
    glue_endpoint_url: str | None = None,
    this_year: int | None = None,
) -> CatalogReport:
    """Create (or replace) the Glue database and the tables of ``store``'s data.

    Args:
        store: the S3 store whose tables are registered (its bucket and prefixes).
        database: the Glue database (created when missing).
        tables: store prefixes to register; default: the raw and features tables.
        glue_endpoint_url: a Glue endpoint other than AWS's (moto_server, LocalStack serve
            Glue on their S3 endpoint); None for AWS.
        this_year: the last year the projection covers at least (default: today's); later
            stored years extend it.

    Returns:
        The tables registered, with their symbols and years. A table with no data yet is
        left out (its column types are read from its files).

    Raises:
        StoreError: the store could not be listed or read.
    """
    prefixes = tables or (store.raw_prefix, store.features_prefix)
    this_year = this_year or date.today().year
    session = boto3.Session(region_name=store.region)
    report = CatalogReport(database)
    with _glue_endpoint(glue_endpoint_url):
        wr.catalog.create_database(database, exist_ok=True, boto3_session=session)
        for prefix in prefixes:
            parts = [p for p in store.list_parts(prefix) if not p.shared and p.rows]
            if not parts:
                logger.info("catalog: %s/ holds no data yet; not registered", prefix)
                continue
            columns = _column_types(store, max(parts, key=lambda p: p.version).key)
            symbols = sorted({encode_symbol(p.symbol) for p in parts})
            first_year = min(p.year for p in parts)
            last_year = max(this_year, max(p.year for p in parts))
            name = prefix.strip("/").replace("/", "_")
            location = f"s3://{store.bucket}/{prefix.strip('/')}/"
            wr.catalog.create_parquet_table(
                database=database,
                table=name,
                path=location,
                columns_types=columns,
                partitions_types={"year": "int", SYMBOL_KEY: "string"},
                description=f"stockml {prefix}/ partitions (partition projection)",
                athena_partition_projection_settings={
                    "projection_types": {"year": "integer", SYMBOL_KEY: "enum"},
                    "projection_ranges": {"year": f"{first_year},{last_year}"},
                    "projection_values": {SYMBOL_KEY: ",".join(symbols)},
                    "projection_storage_location_template": (
                        f"{location}year=${{year}}/symbol=${{{SYMBOL_KEY}}}/"
                    ),
                },
                mode="overwrite",
                boto3_session=session,
            )
            wr.catalog.create_parquet_table(
                database=database,
                table=f"{name}_delta",
                path=f"{location}{SHARED_DIR}/",
                columns_types=columns,
                description=f"stockml {prefix}/ shared delta objects (newest daily appends)",
                mode="overwrite",
                boto3_session=session,
            )
            report.tables[name] = TableInfo(len(symbols), first_year, last_year, len(columns))
            logger.info("catalog: %s.%s and %s_delta registered", database, name, name)
    return report


def _column_types(store: Store, key: str) -> dict[str, str]:
    """Athena column types of one Parquet file of the store."""
    try:
        frame = pd.read_parquet(io.BytesIO(store.get_bytes(key)))
    except (OSError, ValueError) as exc:
        raise StoreError(f"catalog: cannot read the schema of {key}: {exc}") from exc
    columns, _ = wr.catalog.extract_athena_types(frame, index=False)
    return columns


def latest_sql(database: str, table: str, columns: list[str]) -> str:
    """The Athena query of a table's freshest rows (see :data:`LATEST_SQL`)."""
    quoted = ", ".join(f'"{c}"' for c in columns if c != VERSION_COLUMN)
    return LATEST_SQL.format(database=database, table=table, columns=quoted)
