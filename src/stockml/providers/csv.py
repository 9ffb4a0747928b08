"""Yahoo-style CSV files, one per symbol (``<SYMBOL>.csv``), in a folder or an S3 prefix.

Accepted headers (case and spacing do not matter): ``Date, Open, High, Low, Close,
Adj Close, Volume``. ``Adj Close`` missing -> ``adj_close = close``; ``Volume`` missing -> NaN
(indices such as ^VIX publish none). Extra columns (e.g. an unnamed index) are ignored and
rows may come in any order. Dates are parsed per row by :func:`stockml.schemas.coerce_bars`:
a row whose date or numbers cannot be parsed goes to quarantine with its text, the others
are kept.

The provider reads ``<root>/<SYMBOL>.csv`` only: the symbol must match
:data:`stockml.symbols.SYMBOL_PATTERN` (no ``/``, no ``..``), and a file that resolves
outside ``root`` (a symbolic link) is refused.
"""

from __future__ import annotations

import io
import logging
import re
from datetime import date
from pathlib import Path

import pandas as pd

from stockml.errors import ConfigError, ProviderError, UnknownSymbolError, ValidationError
from stockml.providers.base import Provider, RetryPolicy
from stockml.symbols import check_symbol

logger = logging.getLogger(__name__)

_ALIASES = {
    "date": "date",
    "datetime": "date",
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "adjclose": "adj_close",
    "adjustedclose": "adj_close",
    "volume": "volume",
}


def yahoo_style_to_bars(frame: pd.DataFrame, symbol: str, source: str) -> pd.DataFrame:
    """Map a Yahoo-style price table (``Date`` column or index) to the bar columns.

    Raises:
        ValidationError: no date or no close column.
    """
    df = frame.reset_index() if "date" not in {_key(c) for c in frame.columns} else frame
    renamed = {c: _ALIASES[_key(c)] for c in df.columns if _key(c) in _ALIASES}
    df = df.rename(columns=renamed).loc[:, list(dict.fromkeys(renamed.values()))]
    if "date" not in df.columns or "close" not in df.columns:
        raise ValidationError(
            f"{symbol}: a Date and a Close column are required, got {list(frame.columns)}"
        )
    for col in ("open", "high", "low"):
        if col not in df.columns:
            # close-only history (an index level): the day's range is unknown, not bad
            df[col] = df["close"]
    if "adj_close" not in df.columns:
        df["adj_close"] = df["close"]
    if "volume" not in df.columns:
        df["volume"] = float("nan")
    # dates stay as given: coerce_bars parses them per row (local date of a stamp with an
    # offset; an unparseable one is quarantined with its text)
    df["symbol"] = symbol
    df["source"] = source
    return df


def _key(column: object) -> str:
    return re.sub(r"[^a-z]", "", str(column).lower())


class CsvProvider(Provider):
    """Bars from ``<root>/<SYMBOL>.csv``; ``root`` is a folder or ``s3://bucket/prefix``."""

    name = "csv"

    def __init__(
        self,
        root: str | Path,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(retry=retry)
        self.root = str(root).rstrip("/")
        self.endpoint_url = endpoint_url
        self.region = region
        if not self.root.startswith("s3://") and not Path(self.root).is_dir():
            raise ConfigError(f"csv: {self.root!r} is not a folder (or an s3:// prefix)")

    def _read(self, symbol: str) -> bytes:
        # the symbol names the file: one that is not a symbol (``../x``) must not name a path
        filename = f"{check_symbol(symbol)}.csv"
        if not self.root.startswith("s3://"):
            root = Path(self.root).resolve()
            path = (root / filename).resolve()
            if path.parent != root:
                raise ProviderError(f"csv: {root / filename} leads outside {root}; not read")
            if not path.is_file():
                raise UnknownSymbolError(f"csv: no file {root / filename}")
            return path.read_bytes()
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, _, prefix = self.root[len("s3://") :].partition("/")
        key = f"{prefix}/{filename}" if prefix else filename
        s3 = boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region)
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise UnknownSymbolError(f"csv: no object s3://{bucket}/{key}") from exc
            raise ProviderError(f"csv: reading s3://{bucket}/{key} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise ProviderError(f"csv: reading s3://{bucket}/{key} failed: {exc}") from exc

    def _fetch_bars(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        try:
            frame = pd.read_csv(io.BytesIO(self._read(symbol)))
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise ProviderError(f"csv: {symbol}.csv is not a readable CSV: {exc}") from exc
        return yahoo_style_to_bars(frame, symbol, self.name)
