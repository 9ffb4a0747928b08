"""Market-data providers: one interface (``Provider``), one bar schema, retries, fallback.

``build_providers(settings)`` turns ``settings.ingest.providers`` (fallback order) into one
provider. Names: ``yfinance``, ``alpha_vantage``, ``polygon``, ``csv``, ``parquet``, ``sample``.
``csv`` and ``parquet`` read a folder of per-symbol files or ONE multi-symbol table file (a
``symbol`` column): a whole universe in one file.
Provider modules import their client library only when built, so a runtime that uses
``sample`` needs neither yfinance nor polygon.
"""

from __future__ import annotations

from collections.abc import Callable

from stockml.errors import ConfigError
from stockml.providers.base import (
    ACTION_COLUMNS,
    FallbackProvider,
    Provider,
    RetryPolicy,
    call_with_retries,
    empty_actions,
)
from stockml.settings import Settings

__all__ = [
    "ACTION_COLUMNS",
    "PROVIDER_NAMES",
    "FallbackProvider",
    "Provider",
    "RetryPolicy",
    "build_provider",
    "build_providers",
    "call_with_retries",
    "empty_actions",
]


def _secret(value: object) -> str | None:
    return value.get_secret_value() if value is not None else None  # type: ignore[attr-defined]


def _yfinance(settings: Settings, retry: RetryPolicy) -> Provider:
    from stockml.providers.yahoo import YahooProvider

    return YahooProvider(
        settings.provider_urls.yahoo, retry=retry, timeout_s=settings.ingest.timeout_s
    )


def _alpha_vantage(settings: Settings, retry: RetryPolicy) -> Provider:
    from stockml.providers.alpha_vantage import AlphaVantageProvider

    return AlphaVantageProvider(
        _secret(settings.alpha_vantage_api_key),
        base_url=settings.provider_urls.alpha_vantage,
        retry=retry,
        timeout_s=settings.ingest.timeout_s,
    )


def _polygon(settings: Settings, retry: RetryPolicy) -> Provider:
    from stockml.providers.polygon import PolygonProvider

    return PolygonProvider(
        _secret(settings.polygon_api_key),
        base_url=settings.provider_urls.polygon,
        retry=retry,
        timeout_s=settings.ingest.timeout_s,
    )


def _csv(settings: Settings, retry: RetryPolicy) -> Provider:
    from stockml.providers.csv import CsvProvider
    from stockml.providers.parquet import TableProvider, is_table_file

    if not settings.ingest.csv_path:
        raise ConfigError(
            "the csv provider needs a folder or s3:// prefix of <SYMBOL>.csv files: "
            "--path on the command line (ingest.csv_path in the configuration)"
        )
    if is_table_file(settings.ingest.csv_path):
        # one multi-symbol file (a `symbol` column): the whole universe in one table
        return TableProvider(
            settings.ingest.csv_path,
            "csv",
            endpoint_url=settings.store.endpoint_url,
            region=settings.store.region,
            retry=retry,
        )
    return CsvProvider(
        settings.ingest.csv_path,
        endpoint_url=settings.store.endpoint_url,
        region=settings.store.region,
        retry=retry,
    )


def _parquet(settings: Settings, retry: RetryPolicy) -> Provider:
    from stockml.providers.parquet import parquet_provider

    if not settings.ingest.parquet_path:
        raise ConfigError(
            "the parquet provider needs ingest.parquet_path (a .parquet file, a folder or s3:// prefix)"
        )
    return parquet_provider(
        settings.ingest.parquet_path,
        endpoint_url=settings.store.endpoint_url,
        region=settings.store.region,
        retry=retry,
    )


def _sample(settings: Settings, retry: RetryPolicy) -> Provider:
    from stockml.providers.sample import SampleProvider

    return SampleProvider(retry=retry)


_REGISTRY: dict[str, Callable[[Settings, RetryPolicy], Provider]] = {
    "yfinance": _yfinance,
    "alpha_vantage": _alpha_vantage,
    "polygon": _polygon,
    "csv": _csv,
    "parquet": _parquet,
    "sample": _sample,
}
PROVIDER_NAMES: list[str] = list(_REGISTRY)


def build_provider(name: str, settings: Settings) -> Provider:
    """One provider by registry name, configured from ``settings``.

    Raises:
        ConfigError: unknown name, or a missing key / csv_path for that provider.
    """
    if name not in _REGISTRY:
        raise ConfigError(f"unknown provider {name!r}; known: {PROVIDER_NAMES}")
    retry = RetryPolicy(
        max_retries=settings.ingest.max_retries, backoff_s=settings.ingest.backoff_s
    )
    return _REGISTRY[name](settings, retry)


def build_providers(settings: Settings) -> Provider:
    """The providers of ``settings.ingest.providers`` behind one :class:`FallbackProvider`.

    Raises:
        ConfigError: no provider configured, or one cannot be built.
    """
    names = settings.ingest.providers
    if not names:
        raise ConfigError("ingest.providers is empty")
    return FallbackProvider([build_provider(name, settings) for name in names])
