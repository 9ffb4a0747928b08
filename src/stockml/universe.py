"""Named universes: the symbol lists of ``universes:`` in ``configs/config.yaml``.

A universe is a name for a list of symbols (``stockml ingest|features --universe NAME``):
inline ``symbols``, a ``file``, or both (inline first, then the file's, duplicates dropped).
The file is either text (tickers separated by new lines, commas or spaces; ``#`` starts a comment)
or a ``.csv``/``.parquet`` table whose ``symbol`` column lists them, e.g. the very price file
the universe is ingested from. A relative path is relative to the config folder, so a
committed ``configs/universes/<name>.txt`` works from any working directory.
"""

from __future__ import annotations

import re
from pathlib import Path

from stockml.errors import ConfigError, StockmlError
from stockml.settings import Settings, UniverseSpec, find_config_dir


def universe_symbols(settings: Settings, name: str) -> list[str]:
    """The symbols of the universe ``name``, in order, without duplicates.

    Raises:
        ConfigError: no universe of that name, its file cannot be read, or it lists nothing.
    """
    if name not in settings.universes:
        known = ", ".join(sorted(settings.universes)) or "none configured"
        raise ConfigError(f"unknown universe {name!r} (universes: {known})")
    symbols = spec_symbols(settings.universes[name], settings)
    if not symbols:
        raise ConfigError(f"universe {name!r} lists no symbol")
    return symbols


def spec_symbols(spec: UniverseSpec, settings: Settings | None = None) -> list[str]:
    """Inline symbols, then the file's (see the module docstring), duplicates dropped."""
    symbols = [s.strip() for s in spec.symbols if s.strip()]
    if spec.file:
        symbols += read_symbols_file(resolve_path(spec.file), settings)
    return list(dict.fromkeys(symbols))


def resolve_path(path: str) -> str:
    """``path`` itself when absolute or on S3, else relative to the config folder."""
    if path.startswith("s3://") or Path(path).is_absolute():
        return path
    folder = find_config_dir()
    return str((folder / path) if folder is not None else Path(path))


def read_symbols_file(path: str, settings: Settings | None = None) -> list[str]:
    """The symbols listed by a text file, or the distinct ``symbol`` values of a table file.

    Raises:
        ConfigError: the file is missing or unreadable, or a table has no symbol column.
    """
    from stockml.providers.parquet import TABLE_SUFFIXES, read_bytes, table_symbols

    endpoint = settings.store.endpoint_url if settings else None
    region = settings.store.region if settings else "us-east-1"
    try:
        if path.lower().endswith(TABLE_SUFFIXES):
            return table_symbols(path, endpoint, region)
        text = read_bytes(path, endpoint, region).decode("utf-8")
    except (StockmlError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the universe file {path}: {exc}") from exc
    symbols: list[str] = []
    for line in text.splitlines():
        symbols += [s for s in re.split(r"[,\s]+", line.split("#", 1)[0]) if s]
    return symbols
