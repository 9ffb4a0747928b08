"""The data lake's Glue catalog, against moto's Glue and S3 (moto_server).

No Athena engine runs here, so the oracle reads the bucket the way Athena reads a projected
table: every location the projection yields (plus the delta table's), every Parquet file in
it (names starting with ``_`` or ``.`` are ignored), then the README's freshest-row rule
(per symbol and date, the copy with the newest ``_version``, the column LATEST_SQL orders by). That
must equal what the store's reader returns, and every data object must be reachable.
"""

from __future__ import annotations

import io
import itertools
import uuid
from typing import Any

import boto3
import pandas as pd
import pyarrow.parquet as pq
import pytest

from stockml.catalog import LATEST_SQL, register_tables
from stockml.local import LocalServer
from stockml.settings import StoreSettings
from stockml.storage import Store
from utils.bars import make_bars

pytestmark = pytest.mark.integration

# Arrow type (as the files hold it) -> the Athena type a reader must declare
ATHENA_TYPES = {
    "string": "string",
    "large_string": "string",
    "double": "double",
    "timestamp[ns]": "timestamp",
    "timestamp[us]": "timestamp",
}


def _glue(server: LocalServer) -> Any:
    return boto3.client("glue", endpoint_url=server.url, region_name="us-east-1")


def _objects(store: Store, prefix: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=store.endpoint_url, region_name="us-east-1")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _files_athena_reads(store: Store, glue: Any, database: str, table: str) -> list[str]:
    """The objects a projected table (and its _delta twin) covers, as Athena finds them."""
    t = glue.get_table(DatabaseName=database, Name=table)["Table"]
    params = t["Parameters"]
    assert params["projection.enabled"] == "true"
    keys = [k["Name"] for k in t["PartitionKeys"]]
    values = {}
    for key in keys:
        if params[f"projection.{key}.type"] == "integer":
            lo, hi = map(int, params[f"projection.{key}.range"].split(","))
            values[key] = [str(v) for v in range(lo, hi + 1)]
        else:
            values[key] = params[f"projection.{key}.values"].split(",")
    locations = []
    for combo in itertools.product(*(values[k] for k in keys)):
        location = params["storage.location.template"]
        for key, value in zip(keys, combo, strict=True):
            location = location.replace(f"${{{key}}}", value)
        locations.append(location)
    delta = glue.get_table(DatabaseName=database, Name=f"{table}_delta")["Table"]
    locations.append(delta["StorageDescriptor"]["Location"])
    found = []
    for location in locations:
        prefix = location.removeprefix(f"s3://{store.bucket}/")
        for key in _objects(store, prefix):
            name = key.removeprefix(prefix)
            if "/" not in name and not name.startswith(("_", ".")):
                found.append(key)
    return found


def _freshest(store: Store, keys: list[str], columns: list[str]) -> pd.DataFrame:
    """LATEST_SQL evaluated by hand: per (symbol, date), the copy of the newest row version."""
    assert 'ORDER BY "_version" DESC' in LATEST_SQL
    frames = [pq.read_table(io.BytesIO(store.get_bytes(key))).to_pandas() for key in keys]
    rows = pd.concat(frames, ignore_index=True).sort_values("_version", kind="stable")
    newest = rows.drop_duplicates(["symbol", "date"], keep="last")[columns]
    return newest.sort_values(["symbol", "date"]).reset_index(drop=True)


REVISED = ("MSFT", pd.Timestamp("2017-01-09"))


@pytest.fixture
def lake(store_settings: StoreSettings) -> Store:
    """Two symbols (one with a caret) over two years: partition files AND shared deltas."""
    store = Store.from_settings(store_settings)
    bars = pd.concat(
        [
            make_bars("MSFT", "2016-11-01", "2017-01-12"),
            make_bars("^GSPC", "2016-12-01", "2017-01-12", base=2000.0),
        ],
        ignore_index=True,
    )
    store.upsert_bars(bars[bars["date"] < "2017-01-06"])
    for _, day in bars[bars["date"] >= "2017-01-06"].groupby("date"):
        store.upsert_bars(day)  # a daily run: one shared delta object
    # a revised day already in a delta: MSFT 2017 gets a new base, while the shared delta
    # objects (still needed by ^GSPC) keep the stale copy that Athena reads too
    revised = bars[(bars["symbol"] == REVISED[0]) & (bars["date"] == REVISED[1])].copy()
    revised[["high", "close"]] += 0.25
    store.upsert_bars(revised)
    features = bars[["symbol", "date", "close"]].assign(ret_1=0.01)
    store.upsert_table(store.features_prefix, features[features["date"] < "2017-01-10"])
    store.upsert_table(store.features_prefix, features[features["date"] >= "2017-01-10"])
    return store


def test_athena_reads_exactly_the_store_through_the_registered_tables(
    lake: Store, moto_server: LocalServer
) -> None:
    # GIVEN a store whose newest days are still in shared delta objects
    assert any("/_delta/" in k for k in _objects(lake, "raw/")), "the fixture has deltas"
    database = f"lake_{uuid.uuid4().hex[:8]}"
    glue = _glue(moto_server)

    # WHEN its tables are registered in moto's Glue
    report = register_tables(lake, database, glue_endpoint_url=moto_server.url, this_year=2017)

    # THEN both tables and their delta twins exist
    names = {t["Name"] for t in glue.get_tables(DatabaseName=database)["TableList"]}
    assert names == {"raw", "raw_delta", "features", "features_delta"}
    assert report.tables["raw"].symbols == 2 and report.tables["raw"].first_year == 2016
    for table, prefix in (("raw", "raw/"), ("features", "features/")):
        glue_table = glue.get_table(DatabaseName=database, Name=table)["Table"]
        columns = [c["Name"] for c in glue_table["StorageDescriptor"]["Columns"]]
        # AND every data object of the table is inside a projected or delta location
        reachable = _files_athena_reads(lake, glue, database, table)
        assert sorted(reachable) == sorted(_objects(lake, prefix))
        # AND the columns and types are the files' own
        schema = pq.read_schema(io.BytesIO(lake.get_bytes(reachable[0])))
        declared = {c["Name"]: c["Type"] for c in glue_table["StorageDescriptor"]["Columns"]}
        assert declared == {f.name: ATHENA_TYPES[str(f.type)] for f in schema}
        # AND the freshest-row query over what Athena reads gives exactly the store's rows
        columns = [c for c in columns if c != "_version"]  # readers drop it
        athena = _freshest(lake, reachable, columns)
        expected = lake.read_table(prefix.rstrip("/"))[columns].reset_index(drop=True)
        pd.testing.assert_frame_equal(athena, expected, check_dtype=False)
    # (the rule matters: Athena reads the revised day twice, the stale copy and the new one)
    files = _files_athena_reads(lake, glue, database, "raw")
    both = pd.concat(pq.read_table(io.BytesIO(lake.get_bytes(k))).to_pandas() for k in files)
    copies = both[(both["symbol"] == REVISED[0]) & (both["date"] == REVISED[1])]
    assert sorted(copies["close"].diff().dropna().abs()) == [pytest.approx(0.25)]


def test_registering_again_adds_new_symbols_and_an_empty_table_is_skipped(
    store_settings: StoreSettings, moto_server: LocalServer
) -> None:
    # GIVEN a store with raw bars only, registered once
    store = Store.from_settings(store_settings)
    store.upsert_bars(make_bars("MSFT", "2017-01-03", "2017-01-31"))
    database = f"lake_{uuid.uuid4().hex[:8]}"
    first = register_tables(store, database, glue_endpoint_url=moto_server.url, this_year=2017)
    # THEN the features table (no data yet) is not registered
    assert set(first.tables) == {"raw"}
    # WHEN a new symbol arrives and the catalog is registered again
    store.upsert_bars(make_bars("^VIX", "2018-01-02", "2018-01-31", base=12.0))
    register_tables(store, database, glue_endpoint_url=moto_server.url, this_year=2017)
    # THEN the projection covers it (escaped as in its keys) and the later year
    params = _glue(moto_server).get_table(DatabaseName=database, Name="raw")["Table"]["Parameters"]
    assert params["projection.symbol_key.values"] == "%5EVIX,MSFT"
    assert params["projection.year.range"] == "2017,2018"
