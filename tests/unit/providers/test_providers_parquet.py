"""Universe files: one multi-symbol table (Parquet or CSV), a folder of Parquet files, named universes."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from stockml.errors import ConfigError, ProviderError, UnknownSymbolError
from stockml.providers import build_provider
from stockml.providers.parquet import ParquetProvider, TableProvider, is_table_file
from stockml.schemas import BAR_COLUMNS, validate_bars
from stockml.settings import Settings, UniverseSpec
from stockml.universe import universe_symbols
from utils.store_rows import YAHOO_COLUMNS
from utils.universe import make_universe

ALL_TIME = (date(1980, 1, 1), date(2030, 1, 1))


def _vendor_table(bars: pd.DataFrame) -> pd.DataFrame:
    """The universe as a vendor writes it: Yahoo-style headers, a Ticker column, rows shuffled."""
    table = bars.drop(columns=["source"]).rename(columns={"symbol": "Ticker", **YAHOO_COLUMNS})
    return table.sample(frac=1.0, random_state=3).reset_index(drop=True)


@pytest.fixture(scope="module")
def universe() -> pd.DataFrame:
    return make_universe(n_symbols=6, start="2017-01-03", end="2017-03-31", late=1)


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_one_multi_symbol_file_gives_each_symbol_its_own_rows(
    tmp_path: Path, universe: pd.DataFrame, suffix: str
) -> None:
    # GIVEN the universe in one shuffled file with a Ticker column
    path = tmp_path / f"universe.{suffix}"
    table = _vendor_table(universe)
    table.to_parquet(path) if suffix == "parquet" else table.to_csv(path, index=False)
    # WHEN the provider the registry builds for that file is asked for each symbol
    settings = Settings()
    settings.ingest.csv_path = settings.ingest.parquet_path = str(path)
    provider = build_provider(suffix, settings)
    # THEN it reads the table and lists its symbols
    assert isinstance(provider, TableProvider)
    assert provider.symbols() == sorted(universe["symbol"].unique())
    for symbol, expected in universe.groupby("symbol"):
        bars = provider.fetch_bars(str(symbol), *ALL_TIME)
        # AND each symbol gets exactly its rows, sorted, in the bar schema, all valid
        assert list(bars.columns) == BAR_COLUMNS
        assert (bars["symbol"] == symbol).all() and (bars["source"] == suffix).all()
        assert bars["date"].tolist() == expected["date"].tolist()
        pd.testing.assert_series_equal(
            bars["adj_close"].reset_index(drop=True),
            expected["adj_close"].reset_index(drop=True),
            check_exact=False,
            rtol=1e-12,
        )
        assert len(validate_bars(bars).rejected) == 0


def test_a_symbol_missing_from_the_file_is_unknown(tmp_path: Path, universe: pd.DataFrame) -> None:
    # GIVEN a universe file
    path = tmp_path / "u.parquet"
    _vendor_table(universe).to_parquet(path)
    # WHEN / THEN a symbol it does not hold is unknown (the fallback moves on), not a crash
    with pytest.raises(UnknownSymbolError, match="NOPE"):
        TableProvider(path).fetch_bars("NOPE", *ALL_TIME)


def test_rows_without_a_symbol_are_dropped_and_a_file_without_the_column_refused(
    tmp_path: Path, universe: pd.DataFrame
) -> None:
    # GIVEN a file where one row has no ticker, and one with no ticker column at all
    table = _vendor_table(universe)
    table.loc[0, "Ticker"] = None
    dropped = table.iloc[0]
    with_gap, without = tmp_path / "gap.parquet", tmp_path / "none.parquet"
    table.to_parquet(with_gap)
    table.drop(columns=["Ticker"]).to_parquet(without)
    # WHEN / THEN the row without a symbol is not attributed to anyone
    provider = TableProvider(with_gap)
    total = sum(len(provider.fetch_bars(s, *ALL_TIME)) for s in provider.symbols())
    assert total == len(table) - 1
    # (every close of the synthetic universe is distinct)
    assert not any(
        (provider.fetch_bars(s, *ALL_TIME)["close"] == dropped["Close"]).any()
        for s in provider.symbols()
    )
    # AND a table that names no symbol is refused with the columns it has
    with pytest.raises(ProviderError, match="no symbol column"):
        TableProvider(without).symbols()


def test_a_missing_or_corrupt_universe_file_is_a_provider_error(tmp_path: Path) -> None:
    # GIVEN no file, and a file that is not Parquet
    corrupt = tmp_path / "bad.parquet"
    corrupt.write_bytes(b"PAR1 not really")
    # WHEN / THEN both fail clearly (not as an unknown symbol: the fallback must not hide them)
    with pytest.raises(ProviderError, match="no file"):
        TableProvider(tmp_path / "absent.parquet").fetch_bars("U00", *ALL_TIME)
    with pytest.raises(ProviderError, match="not a readable table"):
        TableProvider(corrupt).fetch_bars("U00", *ALL_TIME)


def test_a_folder_of_parquet_files_reads_one_file_per_symbol(
    tmp_path: Path, universe: pd.DataFrame
) -> None:
    # GIVEN <SYMBOL>.parquet files
    for symbol, rows in universe.groupby("symbol"):
        _vendor_table(rows).drop(columns=["Ticker"]).to_parquet(tmp_path / f"{symbol}.parquet")
    settings = Settings()
    settings.ingest.parquet_path = str(tmp_path)
    # WHEN
    provider = build_provider("parquet", settings)
    bars = provider.fetch_bars("U02", *ALL_TIME)
    # THEN
    assert isinstance(provider, ParquetProvider) and not is_table_file(tmp_path)
    assert len(bars) == (universe["symbol"] == "U02").sum()
    with pytest.raises(UnknownSymbolError):
        provider.fetch_bars("U99", *ALL_TIME)


def test_the_parquet_provider_needs_a_path() -> None:
    # GIVEN / WHEN / THEN
    with pytest.raises(ConfigError, match="parquet_path"):
        build_provider("parquet", Settings())


def test_named_universes_from_inline_lists_text_and_table_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, universe: pd.DataFrame
) -> None:
    # GIVEN a config folder with a text file and a price table, and universes naming them
    (tmp_path / "config.yaml").write_text("env: development\n")
    (tmp_path / "tech.txt").write_text("# my tickers\nAAPL, MSFT\nNVDA   # the chips\n\nMSFT\n")
    _vendor_table(universe).to_parquet(tmp_path / "prices.parquet")
    monkeypatch.setenv("STOCKML_CONFIG_DIR", str(tmp_path))
    settings = Settings(
        universes={
            "tech": UniverseSpec(symbols=["GOOG"], file="tech.txt"),
            "file": UniverseSpec(file=str(tmp_path / "prices.parquet")),
            "empty": UniverseSpec(),
            "gone": UniverseSpec(file="absent.txt"),
        }
    )
    # WHEN / THEN inline first, then the file's, duplicates dropped; a relative path is
    # relative to the config folder; a table gives its distinct symbols
    assert universe_symbols(settings, "tech") == ["GOOG", "AAPL", "MSFT", "NVDA"]
    assert universe_symbols(settings, "file") == sorted(universe["symbol"].unique())
    # AND unknown, empty or unreadable universes are configuration errors
    with pytest.raises(ConfigError, match="unknown universe 'nope'"):
        universe_symbols(settings, "nope")
    with pytest.raises(ConfigError, match="lists no symbol"):
        universe_symbols(settings, "empty")
    with pytest.raises(ConfigError, match="cannot read"):
        universe_symbols(settings, "gone")


def test_universes_come_from_the_yaml_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a universe given as JSON in the environment (as a deployment would)
    monkeypatch.setenv("STOCKML_UNIVERSES", '{"mine": {"symbols": ["IBM", "KO"]}}')
    # WHEN / THEN it is a named universe like the YAML's
    assert universe_symbols(Settings(), "mine") == ["IBM", "KO"]


@pytest.mark.shared_data
def test_the_shared_universe_file_splits_into_its_398_symbols(shared_data: Path) -> None:
    # GIVEN the real 398-stock universe file
    path = shared_data / "prices/daily/sp500-universe/sp500-400-2015-2018.parquet"
    provider = TableProvider(path)
    # WHEN / THEN every symbol is there, rows add up, and the known quirks come through
    symbols = provider.symbols()
    assert len(symbols) == 398
    assert sum(len(provider.table().rows(s)) for s in symbols) == 391_042
    assert len(provider.fetch_bars("SNI", *ALL_TIME)) == 2
    pypl = provider.fetch_bars("PYPL", *ALL_TIME)
    assert pypl["date"].min() >= pd.Timestamp("2015-07-01")
    assert len(validate_bars(pypl).rejected) == 0
