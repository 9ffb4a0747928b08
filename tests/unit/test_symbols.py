"""One symbol pattern: what the CLI, the providers and the store accept, the API serves."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from urllib.parse import quote

import pandas as pd
import pytest

from stockml.errors import ValidationError
from stockml.providers.sample import SampleProvider
from stockml.schemas import validate_bars
from stockml.settings import Settings
from stockml.symbols import SYMBOL_PATTERN, check_symbol, is_symbol

# the oracle: written by hand from the rule (upper-case ASCII, 1-12 of A-Z 0-9 . = -,
# starting with a letter or digit, optionally after one leading ^)
VALID = ["MSFT", "A", "BRK.B", "BRK-B", "^GSPC", "^VIX", "EURUSD=X", "000001.SS", "ABCDEFGHIJKL"]
INVALID = [
    "msft",  # lower case
    "Msft",
    "ÄPFEL",  # unicode
    "MSFT ",  # space
    "A/B",  # a path separator
    "../OUTSIDE",
    "..",
    ".HIDDEN",
    "^",
    "^^VIX",
    "A^B",
    "",
    "ABCDEFGHIJKLM",  # 13 characters
    "A" * 300,
    "A\\B",
    "A%2FB",
]


@pytest.mark.parametrize("symbol", VALID)
def test_valid_symbols_pass_everywhere(symbol: str) -> None:
    assert is_symbol(symbol) and check_symbol(symbol) == symbol
    bars = _one_bar(symbol)
    assert len(validate_bars(bars).valid) == 1


@pytest.mark.parametrize("symbol", INVALID)
def test_invalid_symbols_are_refused_by_the_store_providers_and_cli(symbol: str) -> None:
    from stockml.cli import _symbol_list

    # GIVEN a symbol the API could never serve
    assert not is_symbol(symbol)
    # WHEN the store validates a bar of it THEN the row is quarantined as an invalid symbol
    result = validate_bars(_one_bar(symbol))
    assert result.valid.empty
    assert "invalid symbol" in result.rejected.loc[0, "reason"] or symbol == ""
    # AND a provider refuses it before fetching anything
    with pytest.raises(ValidationError, match="invalid symbol"):
        SampleProvider().fetch_bars(symbol, date(2018, 1, 1), date(2018, 2, 1))
    # AND the CLI refuses it (it trims the items of --symbols and skips empty ones)
    if not is_symbol(symbol.strip()) and symbol.strip():
        with pytest.raises(ValidationError, match="invalid symbol"):
            _symbol_list(f"MSFT,{symbol}")


def test_the_error_names_the_symbol_truncated_and_suggests_upper_case() -> None:
    with pytest.raises(ValidationError) as lower:
        check_symbol("msft")
    assert "did you mean 'MSFT'" in str(lower.value)
    with pytest.raises(ValidationError) as long:
        check_symbol("A" * 300)
    assert len(str(long.value)) < 200 and "300 characters" in str(long.value)


@pytest.mark.integration
def test_the_api_serves_exactly_what_the_store_accepts(
    make_settings: Callable[..., Settings],
) -> None:
    from fastapi.testclient import TestClient

    from stockml.api import create_app
    from stockml.api.models import SYMBOL_PATTERN as API_PATTERN

    # GIVEN the API over a loaded bundle (MSFT only)
    assert API_PATTERN == SYMBOL_PATTERN
    client = TestClient(create_app(make_settings()), raise_server_exceptions=False)
    for symbol in VALID + INVALID:
        # WHEN a symbol is asked for
        answer = client.get(f"/metrics/{quote(symbol, safe='')}")
        body = answer.json()
        # THEN a symbol the store accepts gets past the pattern (served, or unknown to the
        # bundle), and one the store refuses is refused by the API too (".." never even
        # reaches it: the client resolves the dot segment)
        served = answer.status_code == 200 and body.get("symbol") == symbol
        unknown = answer.status_code == 404 and body["error"]["code"] == "unknown_symbol"
        served_or_unknown = served or unknown
        assert served_or_unknown == is_symbol(symbol), (symbol, answer.status_code, body)


def _one_bar(symbol: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": [symbol],
            "date": [pd.Timestamp("2024-07-01")],
            "open": [10.0],
            "high": [11.0],
            "low": [9.0],
            "close": [10.5],
            "adj_close": [10.5],
            "volume": [100.0],
            "source": ["test"],
        }
    )
