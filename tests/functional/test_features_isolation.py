"""The feature update keeps failures per symbol, against a real moto_server.

Corrupt bars are written with ``Store.upsert_table`` (no validation): bars stored before
ingestion quarantined such rows, or by a writer that bypassed it.
"""

from __future__ import annotations

import importlib.util
import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stockml.errors import FeatureError
from stockml.features import FeatureConfig
from stockml.features.pipeline import update_features
from stockml.local import LocalServer
from stockml.settings import StoreSettings
from stockml.storage import Store
from utils.lambda_context import LambdaContext
from utils.sample_data import sample_bars

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CONFIG = FeatureConfig()
START, END = date(2016, 1, 1), date(2017, 11, 10)


@pytest.fixture(scope="module")
def history() -> tuple[pd.DataFrame, pd.DataFrame]:
    """MSFT and the market series ^GSPC/^IXIC, 2016-01 to 2017-11 (pmdarima, arch)."""
    return sample_bars("MSFT", start=START, end=END), sample_bars(
        "^GSPC", "^IXIC", start=START, end=END
    )


def _corrupt(bars: pd.DataFrame, symbol: str, column: str, value: float) -> pd.DataFrame:
    """A copy of ``bars`` as ``symbol`` whose 100th row holds ``value`` in ``column``."""
    out = bars.assign(symbol=symbol).reset_index(drop=True)
    out.loc[100, column] = value
    return out


@pytest.fixture
def store_with_bad_symbols(store_settings: StoreSettings, history) -> Store:  # type: ignore[no-untyped-def]
    """MSFT and the market series valid; AAPL with one inf close, IBM with one zero low."""
    msft, market = history
    store = Store.from_settings(store_settings)
    store.upsert_bars(pd.concat([msft, market]))
    bad = pd.concat([_corrupt(msft, "AAPL", "close", np.inf), _corrupt(msft, "IBM", "low", 0.0)])
    store.upsert_table(store.raw_prefix, bad)
    return store


def test_symbols_with_bad_stored_bars_fail_alone(store_with_bad_symbols: Store, history) -> None:  # type: ignore[no-untyped-def]
    store = store_with_bad_symbols
    msft, _ = history
    # WHEN the features of the three symbols are updated
    report = update_features(store, ["AAPL", "IBM", "MSFT"], CONFIG)
    # THEN MSFT's are written; AAPL and IBM failed, each with what is wrong and where
    assert report.rows == {"MSFT": len(msft) - CONFIG.warmup_rows()}
    assert set(store.last_dates(store.features_prefix)) == {"MSFT"}
    day = msft["date"].iloc[100].strftime("%Y-%m-%d")
    assert report.failed == {
        "AAPL": f"stored bars hold 1 bar(s) with infinite prices (e.g. {day})",
        "IBM": f"stored bars hold 1 bar(s) with non-positive prices (e.g. {day})",
    }
    # AND raising afterwards names both
    with pytest.raises(FeatureError, match="2 symbol\\(s\\) failed: AAPL: .*; IBM: "):
        report.raise_for_errors()


def test_duplicate_stored_dates_fail_their_symbol_only(
    store_settings: StoreSettings, history
) -> None:  # type: ignore[no-untyped-def]
    # GIVEN MSFT valid, and DUP stored twice on one date (two rows differing in source)
    msft, market = history
    store = Store.from_settings(store_settings)
    store.upsert_bars(pd.concat([msft, market]))
    dup = msft.assign(symbol="DUP")
    twice = pd.concat([dup, dup.iloc[[50]].assign(source="other", close=dup["close"].iloc[50] + 1)])
    store.upsert_table(store.raw_prefix, twice, key=("symbol", "date", "source"))
    if not store.read_bars(["DUP"]).duplicated(["symbol", "date"]).any():
        pytest.skip("this store no longer returns two rows of one (symbol, date)")
    # WHEN the features of both are updated
    report = update_features(store, ["DUP", "MSFT"], CONFIG)
    # THEN MSFT's are written and DUP fails, naming the duplicate date
    assert set(report.rows) == {"MSFT"}
    day = dup["date"].iloc[50].strftime("%Y-%m-%d")
    assert report.failed == {"DUP": f"stored bars hold 1 bar(s) with duplicate dates (e.g. {day})"}


def test_a_bad_market_series_fails_the_symbols_it_feeds_naming_it(
    store_settings: StoreSettings, history
) -> None:  # type: ignore[no-untyped-def]
    # GIVEN valid MSFT bars and a ^GSPC series with one infinite close
    msft, market = history
    store = Store.from_settings(store_settings)
    gspc = market[market["symbol"] == "^GSPC"]
    store.upsert_bars(pd.concat([msft, market[market["symbol"] == "^IXIC"]]))
    store.upsert_table(store.raw_prefix, _corrupt(gspc, "^GSPC", "close", np.inf))
    # WHEN MSFT's features are updated
    report = update_features(store, ["MSFT"], CONFIG)
    # THEN nothing is written for MSFT, and the reason names the market series
    assert report.rows == {}
    assert report.failed["MSFT"].startswith("market series ^GSPC: stored bars hold 1 bar(s)")


def test_the_cli_exits_1_after_writing_the_good_symbols(
    monkeypatch: pytest.MonkeyPatch, store_with_bad_symbols: Store, moto_server: LocalServer
) -> None:
    from typer.testing import CliRunner

    from stockml.cli import app

    # GIVEN the environment naming the store with AAPL and IBM corrupt
    monkeypatch.setenv("STOCKML_STORE__BUCKET", store_with_bad_symbols.bucket)
    monkeypatch.setenv("STOCKML_STORE__ENDPOINT_URL", moto_server.url)
    # WHEN ``stockml features`` runs over every symbol
    result = CliRunner().invoke(app, ["features"])
    # THEN it exits 1, names each failed symbol and its reason, and wrote the others
    assert result.exit_code == 1, result.output
    assert "AAPL failed: stored bars hold 1 bar(s) with infinite prices" in result.output
    assert "IBM failed: stored bars hold 1 bar(s) with non-positive prices" in result.output
    written = store_with_bad_symbols.last_dates(store_with_bad_symbols.features_prefix)
    assert set(written) == {"MSFT", "^GSPC", "^IXIC"}


def test_the_scheduled_lambda_fails_loudly_after_writing_the_good_symbols(
    monkeypatch: pytest.MonkeyPatch, store_with_bad_symbols: Store, moto_server: LocalServer
) -> None:
    # GIVEN the environment template.yaml injects, over the store with AAPL and IBM corrupt
    monkeypatch.setenv("STOCKML_STORE__BUCKET", store_with_bad_symbols.bucket)
    monkeypatch.setenv("STOCKML_STORE__ENDPOINT_URL", moto_server.url)
    spec = importlib.util.spec_from_file_location(
        "features_app", REPO / "functions/features/app.py"
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    event = json.loads((REPO / "events" / "features_schedule.json").read_text())
    # WHEN the scheduled invocation runs in-process
    with pytest.raises(FeatureError, match="AAPL: .*IBM: "):
        module.lambda_handler(event, LambdaContext())
    # THEN it failed (retries, alarms) after writing the symbols that could be computed
    written = store_with_bad_symbols.last_dates(store_with_bad_symbols.features_prefix)
    assert set(written) == {"MSFT", "^GSPC", "^IXIC"}
