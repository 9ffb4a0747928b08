"""Domain errors. Every error the package raises on purpose is a StockmlError."""

from __future__ import annotations


class StockmlError(Exception):
    """Base class of every error stockml raises on purpose."""


class ConfigError(StockmlError):
    """A configuration value is missing or invalid."""


class ValidationError(StockmlError):
    """Input data does not match the expected schema."""


class ProviderError(StockmlError):
    """A market-data provider failed (network, HTTP status, unparseable payload)."""


class TransientProviderError(ProviderError):
    """A provider failed in a way that may pass on a retry (timeout, connection error, HTTP 5xx)."""


class RateLimitError(TransientProviderError):
    """A provider refused the call because of its rate limit (HTTP 429 or a rate-limit note)."""


class EmptyResponseError(ProviderError):
    """A provider answered with no data where data was expected."""


class AllProvidersFailedError(ProviderError):
    """Every configured provider failed for a symbol."""


class UnknownSymbolError(StockmlError):
    """The symbol is not known to the store, the provider or the model bundle."""


class StoreError(StockmlError):
    """Reading from or writing to the object store failed."""


class IngestError(StockmlError):
    """An ingestion run finished, but at least one symbol failed (the message lists them)."""


class FeatureError(StockmlError):
    """Features cannot be computed from the given input (empty, NaN, too short)."""


class ModelError(StockmlError):
    """Training, export or loading of a model failed."""


class TrackingError(StockmlError):
    """The MLflow tracking server did not answer, or failed while a training was logged."""


class BundleError(ModelError):
    """A serving bundle is missing, incomplete or corrupt (sha256 mismatch)."""
