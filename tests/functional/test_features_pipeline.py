"""The incremental feature update and the features Lambda, against a real moto_server."""

from __future__ import annotations

import importlib.util
import json
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from stockml.features import FeatureConfig, build_features, feature_columns, target_columns
from stockml.features.pipeline import update_features
from stockml.local import LocalServer
from stockml.settings import StoreSettings
from stockml.storage import Store
from stockml.window import FeatureWindow, window_key, windows_prefix
from utils.lambda_context import LambdaContext
from utils.sample_data import sample_bars

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CONFIG = FeatureConfig()


@pytest.fixture(scope="module")
def history() -> tuple[pd.DataFrame, pd.DataFrame]:
    """MSFT 2012-2017 (pmdarima) and ^GSPC/^IXIC (arch) of the same years, bar schema."""
    start, end = date(2012, 1, 1), date(2017, 11, 10)
    return (
        sample_bars("MSFT", start=start, end=end),
        sample_bars("^GSPC", "^IXIC", start=start, end=end),
    )


def test_incremental_update_equals_a_full_recompute(store_settings: StoreSettings, history) -> None:  # type: ignore[no-untyped-def]
    # GIVEN raw bars up to 2017-06-30 in the store, and their features computed
    msft, market = history
    store = Store.from_settings(store_settings)
    cut = pd.Timestamp("2017-06-30")
    store.upsert_bars(pd.concat([msft[msft["date"] <= cut], market[market["date"] <= cut]]))
    first = update_features(store, ["MSFT"], CONFIG)
    assert first.rows["MSFT"] == (msft["date"] <= cut).sum() - CONFIG.warmup_rows()
    # WHEN later bars arrive and the update runs again
    store.upsert_bars(pd.concat([msft[msft["date"] > cut], market[market["date"] > cut]]))
    second = update_features(store, ["MSFT"], CONFIG)
    # THEN only the new days (+ the last H stored rows, whose targets are now known) were written
    new_days = int((msft["date"] > cut).sum())
    assert second.rows["MSFT"] == new_days + CONFIG.horizon
    # AND the stored table equals a full recompute over the whole history
    stored = store.read_table(store.features_prefix, ["MSFT"]).reset_index(drop=True)
    full = build_features(msft, market, None, CONFIG)
    assert stored["date"].tolist() == full["date"].tolist()
    cols = feature_columns(CONFIG) + target_columns(CONFIG)
    np.testing.assert_allclose(
        stored[cols].to_numpy(float), full[cols].to_numpy(float), rtol=1e-8, atol=1e-10
    )
    # AND the serving window is the table's last rows, exactly, under ONE key (the first
    # update's window was replaced, not kept beside it)
    keys = store.list_keys(windows_prefix(store.features_prefix))
    assert keys == [window_key(store.features_prefix, "MSFT", stored["date"].iloc[-1].date())]
    window = FeatureWindow.from_bytes(store.get_bytes(keys[0]))
    tail = stored.tail(CONFIG.serving_rows)
    assert len(window) == CONFIG.serving_rows and window.columns == tuple(feature_columns(CONFIG))
    np.testing.assert_array_equal(window.values, tail[feature_columns(CONFIG)].to_numpy(float))
    np.testing.assert_array_equal(window.close, tail["close"].to_numpy(float))
    assert window.dates.tolist() == [d.date() for d in tail["date"]]
    # AND the formerly last rows now carry their targets
    assert stored["target_1"].isna().sum() == 1
    # AND a re-run with nothing new writes nothing
    assert update_features(store, ["MSFT"], CONFIG).rows == {}


def test_incremental_update_equals_a_full_recompute_across_missing_index_sessions(
    store_settings: StoreSettings, history
) -> None:  # type: ignore[no-untyped-def]
    # GIVEN ^VIX too, with a session missing just before the cut (its stale rows straddle the
    # cut: the next session and five sessions later) and a ^GSPC session missing just after it
    msft, market = history
    vix = sample_bars("^VIX", start=date(2014, 1, 1), end=date(2017, 11, 10))
    cut = pd.Timestamp("2017-06-30")
    holes = {"^VIX": pd.Timestamp("2017-06-28"), "^GSPC": pd.Timestamp("2017-07-06")}
    market = pd.concat([market, vix], ignore_index=True)
    market = market[~market.apply(lambda r: holes.get(r["symbol"]) == r["date"], axis=1)]
    store = Store.from_settings(store_settings)
    store.upsert_bars(pd.concat([msft[msft["date"] <= cut], market[market["date"] <= cut]]))
    update_features(store, ["MSFT"], CONFIG)
    # WHEN later bars arrive and the update runs again
    store.upsert_bars(pd.concat([msft[msft["date"] > cut], market[market["date"] > cut]]))
    update_features(store, ["MSFT"], CONFIG)
    # THEN the stored table (what serving reads) equals a full recompute (what training computes)
    stored = store.read_table(store.features_prefix, ["MSFT"]).reset_index(drop=True)
    full = build_features(msft, market, None, CONFIG)
    assert stored["date"].tolist() == full["date"].tolist()
    cols = feature_columns(CONFIG)
    np.testing.assert_allclose(
        stored[cols].to_numpy(float), full[cols].to_numpy(float), rtol=1e-8, atol=1e-10
    )
    # AND the holes are flagged there, not bridged
    by_date = stored.set_index("date")
    assert by_date.loc["2017-06-28":"2017-06-29", "mkt_vix_stale"].tolist() == [1.0, 1.0]
    assert by_date.loc["2017-07-06":"2017-07-07", "mkt_gspc_stale"].tolist() == [1.0, 1.0]
    assert by_date.loc["2017-07-06", "mkt_vix_stale"] == 1.0  # 06-28 + 5 sessions, after the cut


def test_a_missing_window_is_written_without_new_features(
    store_settings: StoreSettings, history
) -> None:  # type: ignore[no-untyped-def]
    # GIVEN features up to date, whose window was lost (or predates the windows)
    msft, market = history
    store = Store.from_settings(store_settings)
    store.upsert_bars(pd.concat([msft.tail(400), market]))
    update_features(store, ["MSFT"], CONFIG)
    store.delete_keys(store.list_keys(windows_prefix(store.features_prefix)))
    # WHEN the update runs with no new bars
    report = update_features(store, ["MSFT"], CONFIG)
    # THEN no feature row is written, but the window is back
    assert report.rows == {} and report.windows_written == 1
    assert len(store.list_keys(windows_prefix(store.features_prefix))) == 1
    # AND a second run writes nothing at all
    assert update_features(store, ["MSFT"], CONFIG).windows_written == 0


def test_the_window_carries_each_rows_raw_bar(store_settings: StoreSettings, history) -> None:  # type: ignore[no-untyped-def]
    # GIVEN raw bars in the store
    msft, market = history
    store = Store.from_settings(store_settings)
    store.upsert_bars(pd.concat([msft.tail(400), market]))
    # WHEN the features and the serving window are written
    update_features(store, ["MSFT"], CONFIG)
    (key,) = store.list_keys(windows_prefix(store.features_prefix) + "symbol=MSFT/")
    window = FeatureWindow.from_bytes(store.get_bytes(key))
    # THEN each window row holds the raw open, high, low and volume of its session (for charts)
    raw = msft.set_index(msft["date"].dt.date)
    rows = raw.loc[[d.astype(object) for d in window.dates]]
    assert window.bars is not None
    np.testing.assert_array_equal(window.bars, rows[["open", "high", "low", "volume"]].to_numpy())
    np.testing.assert_array_equal(window.close, rows["close"].to_numpy())


def load_handler() -> Any:
    spec = importlib.util.spec_from_file_location(
        "features_app", REPO / "functions/features/app.py"
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.lambda_handler


@pytest.mark.parametrize("event_file", ["features_schedule.json", "features_manual.json"])
def test_the_lambda_updates_features_from_its_event(
    monkeypatch: pytest.MonkeyPatch,
    store_settings: StoreSettings,
    moto_server: LocalServer,
    history,
    event_file: str,
) -> None:  # type: ignore[no-untyped-def]
    # GIVEN the environment template.yaml injects, and raw bars of MSFT and too few of NEW
    monkeypatch.setenv("STOCKML_STORE__BUCKET", store_settings.bucket)
    monkeypatch.setenv("STOCKML_STORE__ENDPOINT_URL", moto_server.url)
    msft, market = history
    store = Store.from_settings(store_settings)
    short = msft.iloc[-10:].assign(symbol="NEW")
    store.upsert_bars(pd.concat([msft[msft["date"] >= "2016-01-01"], market, short]))
    event = json.loads((REPO / "events" / event_file).read_text())
    # WHEN the handler runs in-process
    result = load_handler()(event, LambdaContext())
    # THEN MSFT's features are stored; NEW is skipped (scheduled run) with its reason
    expected = int((msft["date"] >= "2016-01-01").sum()) - CONFIG.warmup_rows()
    assert result["rows"]["MSFT"] == expected
    stored = store.read_table(store.features_prefix, ["MSFT"])
    assert len(stored) == expected
    if event_file == "features_schedule.json":
        assert "NEW" in result["skipped"]
        assert set(result["rows"]) == {"MSFT", "^GSPC", "^IXIC"}


def test_the_cli_command_updates_the_named_symbols(
    monkeypatch: pytest.MonkeyPatch,
    store_settings: StoreSettings,
    moto_server: LocalServer,
    history,
) -> None:  # type: ignore[no-untyped-def]
    # GIVEN raw bars of MSFT and the indices in a local S3, named by the environment
    from typer.testing import CliRunner

    from stockml.cli import app

    monkeypatch.setenv("STOCKML_STORE__BUCKET", store_settings.bucket)
    monkeypatch.setenv("STOCKML_STORE__ENDPOINT_URL", moto_server.url)
    msft, market = history
    recent = lambda f: f[f["date"] >= "2017-01-01"]  # noqa: E731
    Store.from_settings(store_settings).upsert_bars(pd.concat([recent(msft), recent(market)]))
    # WHEN
    result = CliRunner().invoke(app, ["features", "--symbols", "MSFT"])
    # THEN only MSFT's features were written, and the table says how many rows
    assert result.exit_code == 0, result.output
    rows = int((recent(msft)["date"]).size) - CONFIG.warmup_rows()
    assert "MSFT" in result.output and str(rows) in result.output
    store = Store.from_settings(store_settings)
    assert set(store.last_dates(store.features_prefix)) == {"MSFT"}
