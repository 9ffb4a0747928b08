"""A universe from one multi-symbol file through ``stockml ingest`` and ``stockml features``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from stockml import cli
from stockml.features import FeatureConfig
from stockml.inference import load_bundle
from stockml.local import LocalServer
from stockml.settings import StoreSettings
from stockml.storage import Store
from utils.universe import make_universe
from utils.universe_bundle import tiny_universe_config

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

runner = CliRunner()


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, store_settings: StoreSettings, moto_server: LocalServer
) -> Store:
    monkeypatch.setenv("STOCKML_STORE__BUCKET", store_settings.bucket)
    monkeypatch.setenv("STOCKML_STORE__ENDPOINT_URL", moto_server.url)
    return Store.from_settings(store_settings)


def test_one_file_ingests_every_symbol_and_the_universe_gets_cross_sections(
    env: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN 35 stocks in ONE parquet file, and a universe naming that file
    bars = make_universe(n_symbols=35, start="2017-01-03", end="2017-04-28")
    path = tmp_path / "universe.parquet"
    bars.drop(columns=["source"]).to_parquet(path)
    monkeypatch.setenv("STOCKML_UNIVERSES", json.dumps({"mine": {"file": str(path)}}))
    # WHEN the file is ingested (no --symbols: every symbol of the file), then its features
    ingested = runner.invoke(cli.app, ["ingest", "--path", str(path), "--start", "2017-01-01"])
    features = runner.invoke(cli.app, ["features", "--universe", "mine"])
    # THEN both succeed and, for this many symbols, print totals rather than 35 rows
    assert ingested.exit_code == 0, ingested.output
    assert "all 35" in ingested.output and str(len(bars)) in ingested.output
    assert features.exit_code == 0, features.output
    warmup = FeatureConfig.from_yaml().warmup_rows()
    assert "all 35" in features.output
    assert str(len(bars) - 35 * warmup) in features.output
    # AND every stock's rows are stored, ranked against the 34 others
    stored = env.read_table(env.features_prefix)
    assert stored["symbol"].nunique() == 35
    last = stored[stored["date"] == stored["date"].max()]
    assert sorted(last["xs_logret_1"]) == pytest.approx([i / 34 - 0.5 for i in range(35)])


@pytest.mark.shared_data
def test_part_of_the_shared_universe_file_end_to_end(
    env: Store, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the real universe file and a named universe of five of its stocks (SNI has 2 rows)
    path = shared_data / "prices/daily/sp500-universe/sp500-400-2015-2018.parquet"
    five = ["AAPL", "JNJ", "MSFT", "PYPL", "SNI"]
    monkeypatch.setenv("STOCKML_UNIVERSES", json.dumps({"five": {"symbols": five}}))
    # WHEN they are ingested from the file and their features computed
    ingested = runner.invoke(cli.app, ["ingest", "--path", str(path), "--universe", "five"])
    features = runner.invoke(cli.app, ["features", "--universe", "five"])
    # THEN every bar of the file is stored, and SNI is skipped for its warm-up
    assert ingested.exit_code == 0, ingested.output
    table = pd.read_parquet(path)
    stored = env.read_bars(five)
    assert len(stored) == table["symbol"].isin(five).sum()
    assert features.exit_code == 0, features.output
    assert "SNI" in features.output and "skipped" in features.output
    assert set(env.last_dates(env.features_prefix)) == set(five) - {"SNI"}


def test_train_and_evaluate_a_universe_from_the_cli(
    env: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN 24 stocks' bars in the store up to 2017-06-30, one more listed 10 sessions before
    # that (too few bars for the features' warm-up), a universe naming them all and one stock
    # without any bars, and a tiny model configuration in universe mode
    bars = make_universe(n_symbols=24, start="2016-01-04", end="2017-09-29", seed=4)
    names = sorted(bars["symbol"].unique())
    first = bars[bars["date"] <= "2017-06-30"]
    late = first[first["symbol"] == names[0]].tail(10).assign(symbol="TINY")
    env.upsert_bars(pd.concat([first, late], ignore_index=True))
    monkeypatch.setenv(
        "STOCKML_UNIVERSES", json.dumps({"mine": {"symbols": [*names, "TINY", "GONE"]}})
    )
    configs = tmp_path / "configs"
    configs.mkdir()
    for name in ("config.yaml", "feature_config.yaml"):
        shutil.copy(REPO / "configs" / name, configs / name)
    tiny = tiny_universe_config().model_dump(mode="json")
    tiny["models"] = ["xgboost"]
    (configs / "model_config.yaml").write_text(yaml.safe_dump(tiny))
    monkeypatch.setenv("STOCKML_CONFIG_DIR", str(configs))

    # WHEN the universe is evaluated and trained
    evaluated = runner.invoke(cli.app, ["evaluate", "--universe", "mine", "--json"])
    trained = runner.invoke(
        cli.app, ["train", "--universe", "mine", "--models", "xgboost", "--no-mlflow", "--json"]
    )

    # THEN the report carries the cross-sectional headline and the universe block
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    for key in ("rank_ic", "rank_ic_t", "long_short_sharpe_net", "turnover"):
        assert key in report, key
    assert report["symbols"] == names  # GONE and TINY: left out, not an error
    assert report["universe"]["n_symbols"] == 24
    assert report["rank_ic"] == report["universe"]["models"]["ensemble"]["rank_ic"]
    assert {"rank_ic_t_h1", "long_short_sharpe_net"} <= {
        c["name"] for c in report["gate"]["checks"]
    }
    # AND the trained bundle is a global one with its ranking figures
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.stdout)
    assert summary["promoted"] is False and summary["ranking"]["rank_ic"] is not None
    bundle = load_bundle(env, summary["version"], models_prefix=env.models_prefix)
    assert set(bundle.manifest.extra["universe"]["score_map"]) == {"xgboost", "ensemble"}
    assert bundle.metrics["ranking"]["long_short"]["equity"]

    # WHEN the next quarter's bars arrive and the bundle is forward-tested on them
    env.upsert_bars(bars[bars["date"] > "2017-06-30"])
    forward = runner.invoke(
        cli.app,
        ["evaluate", "--bundle", summary["version"], "--from", "2017-07-03"]
        + ["--universe", "mine", "--json"],
    )
    # THEN its ranking is scored on those sessions only, TINY still left out
    assert forward.exit_code == 0, forward.output
    scored = json.loads(forward.stdout)
    assert scored["symbols"] == names and scored["from"] == "2017-07-03"
    assert scored["universe"]["n_symbols"] == 24 and scored["rank_ic"] is not None
