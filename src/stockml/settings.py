"""One Settings object: code defaults < configs/config.yaml < environment < arguments.

Environment variables use the prefix ``STOCKML_`` and ``__`` for nesting, e.g.
``STOCKML_STORE__BUCKET=my-bucket`` or ``STOCKML_INGEST__PROVIDERS='["yfinance","sample"]'``.
Secrets are read from the environment only (never from YAML): ``ALPHA_VANTAGE_API_KEY``,
``POLYGON_API_KEY``, ``STOCKML_API_KEY``. Outside ``env: development`` a secret that is set
must not be a value published in this repository (examples, tests) nor too short to resist a
guess: :meth:`Settings._refuse_weak_secrets`.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from stockml.bundle import DRIFT_WINDOW, NULL_QUANTILES
from stockml.errors import ConfigError

CONFIG_DIR_ENV = "STOCKML_CONFIG_DIR"

Environment = Literal["development", "staging", "production"]
# the template's stage names (and a laptop's "local") name the same environments
_ENV_ALIASES = {"dev": "development", "local": "development", "prod": "production"}
# secret values published in the repository (.env.example, tests, events): never outside
# development
_PUBLISHED_SECRETS = {"changeme", "changethis", "local-test-key", "secret", "test", "testing"}
MIN_SECRET_CHARS = 16


def find_config_dir() -> Path | None:
    """Return the folder holding config.yaml: $STOCKML_CONFIG_DIR, else ./configs, else the repo's."""
    env = os.environ.get(CONFIG_DIR_ENV)
    if env:
        return Path(env)
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = base / "configs"
        if (candidate / "config.yaml").is_file():
            return candidate
    return None


def load_yaml_config(name: str) -> dict[str, Any]:
    """Load ``configs/<name>`` (e.g. ``feature_config.yaml``) as a dict; empty if absent."""
    folder = find_config_dir()
    if folder is None or not (folder / name).is_file():
        return {}
    try:
        data = yaml.safe_load((folder / name).read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{folder / name} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{folder / name} must hold a mapping at the top level")
    return data


class StoreSettings(BaseModel):
    """Where data lives: an S3 bucket (moto_server, LocalStack or AWS by endpoint)."""

    bucket: str = "stockml-local"
    # None = AWS; "" means None too (a template can only declare a variable with a value)
    endpoint_url: str | None = None
    region: str = "us-east-1"
    raw_prefix: str = "raw"
    features_prefix: str = "features"
    quarantine_prefix: str = "quarantine"
    models_prefix: str = "models"
    news_prefix: str = "news"
    # what the API served (stockml.predlog) and what the monitor publishes (stockml.monitoring)
    predictions_prefix: str = "predictions"
    monitoring_prefix: str = "monitoring"

    @field_validator("endpoint_url")
    @classmethod
    def _empty_is_aws(cls, value: str | None) -> str | None:
        return value or None


class IngestSettings(BaseModel):
    """What to ingest and from whom (providers in fallback order)."""

    symbols: list[str] = Field(default_factory=lambda: ["MSFT", "^GSPC", "^IXIC", "^VIX"])
    providers: list[str] = Field(default_factory=lambda: ["sample"])
    start: date = date(1999, 1, 1)
    csv_path: str | None = None
    # the parquet provider: one multi-symbol .parquet file, or a folder of <SYMBOL>.parquet
    parquet_path: str | None = None
    max_retries: int = 3
    backoff_s: float = 0.5
    timeout_s: float = 10.0
    batch_size: int = 25
    # SQS queue of the scheduled fan-out (the template injects it); None = ingest inline
    queue_url: str | None = None


class UniverseSpec(BaseModel):
    """A named list of symbols (``universes.<name>``): inline ``symbols`` and/or a ``file``.

    ``file`` is a text file (one ticker per line, ``#`` comments) or a ``.csv``/``.parquet``
    table whose ``symbol`` column lists them; a relative path is relative to the config folder.
    """

    symbols: list[str] = Field(default_factory=list)
    file: str | None = None


class ProviderUrls(BaseModel):
    """Base URLs of the providers' HTTP APIs; tests point them at a local replay server."""

    yahoo: str = "https://query2.finance.yahoo.com"
    alpha_vantage: str = "https://www.alphavantage.co"
    polygon: str = "https://api.polygon.io"


class MlflowSettings(BaseModel):
    tracking_uri: str | None = None
    experiment: str = "stockml"
    registered_model: str = "stockml"


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    cors_origins: list[str] = Field(default_factory=lambda: ["http://localhost:8501"])
    rate_limit_per_minute: int = 600
    # "champion" reads <models_prefix>/champion.json; any other value names a bundle version
    model_version: str = "champion"
    # a local bundle folder instead of the store (development, benchmarks)
    bundle_dir: str | None = None
    # how long a container keeps a symbol's latest feature rows before listing the store again
    features_ttl_s: float = 300.0
    # features are fresh while their last date is at most this many sessions old; responses
    # say how old they are (data_age_sessions, stale)
    max_feature_age_sessions: int = 5
    # answer 503 (stale_features) instead of a forecast from stale features
    refuse_stale: bool = False
    # request bodies above this many bytes are refused with 413 before they are parsed
    max_body_bytes: int = Field(default=16_384, ge=1)
    # addresses or networks (CIDR) of the reverse proxies whose X-Forwarded-For is believed;
    # empty: the rate limit keys on the TCP peer (uvicorn) or API Gateway's sourceIp (Lambda)
    trusted_proxies: list[str] = Field(default_factory=list)
    # record every served forecast to <predictions_prefix>/ (stockml.predlog), flushed in the
    # background once this many records wait or the oldest is this old
    log_predictions: bool = True
    log_flush_records: int = Field(default=5000, ge=1)
    log_flush_seconds: float = Field(default=60.0, gt=0)
    # how long a container reuses what the monitor published (/monitoring, live /metrics)
    monitoring_ttl_s: float = 300.0
    # the JSON logs' level (access lines are INFO)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(
                    f"api.trusted_proxies: {item!r} is not an IP address or CIDR network"
                ) from exc
        return value


class LiveMetricsSettings(BaseModel):
    """The monitor's live metrics: served forecasts scored against the realised prices."""

    # the summary: forecasts of the last N sessions whose first outcome is realised
    window_sessions: int = Field(default=60, ge=5)
    # the accuracy-over-time series: rolling over N sessions, for the last `history_sessions`
    series_sessions: int = Field(default=20, ge=2)
    history_sessions: int = Field(default=250, ge=5)
    # a rank IC (cross-sectional Spearman per session) needs at least this many symbols
    min_rank_ic_symbols: int = Field(default=5, ge=3)


class DriftSettings(BaseModel):
    """Feature drift: PSI of the recent window vs the bundle's training distribution."""

    # sessions per window: the bundle's feature distribution is fitted with it at training
    # time (the monitor uses the window the champion's bundle records)
    window_sessions: int = Field(default=DRIFT_WINDOW, ge=5)
    # a feature drifts when its PSI passes this floor AND the null_quantile of what the
    # training history's own windows reached (one of bundle.NULL_QUANTILES)
    psi_threshold: float = Field(default=0.25, gt=0)
    null_quantile: float = 0.99
    # drift (a retraining reason) when at least this share of the checked features drift
    max_drifted_share: float = Field(default=0.3, gt=0, le=1)

    @field_validator("null_quantile")
    @classmethod
    def _recorded(cls, value: float) -> float:
        if value not in NULL_QUANTILES:
            raise ValueError(f"monitoring.drift.null_quantile must be one of {NULL_QUANTILES}")
        return value


class FreshnessSettings(BaseModel):
    """Data freshness: the last stored bar vs the last completed NYSE session."""

    # a symbol is stale when its last bar is more than this many sessions old
    max_age_sessions: int = Field(default=1, ge=0)


class QuarantineSettings(BaseModel):
    """The share of rows quarantined by ingestion over the recent sessions."""

    window_sessions: int = Field(default=20, ge=1)
    max_share: float = Field(default=0.01, ge=0, le=1)


class RetrainSettings(BaseModel):
    """When the monitor triggers training (the promotion gate then decides, as always)."""

    enabled: bool = True
    # live figures count once the champion has this many scored sessions (horizon 1)
    min_sessions: int = Field(default=40, ge=1)
    # live RMSE over the better of naive and drift's, pooled, horizon 1
    max_rmse_ratio: float = Field(default=1.10, gt=0)
    # the band's live coverage (horizon 1) must stay within these bounds
    min_coverage: float = Field(default=0.80, ge=0, le=1)
    max_coverage: float = Field(default=0.98, ge=0, le=1)
    on_drift: bool = True
    # no new trigger within this many days of the last one
    cooldown_days: int = Field(default=7, ge=0)
    # on AWS: the Batch job of infra/training-batch.yaml (queue and definition ARNs or names);
    # unset = the training job runs in the monitor's process (`stockml monitor`)
    batch_job_queue: str | None = None
    batch_job_definition: str | None = None

    @field_validator("batch_job_queue", "batch_job_definition")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None


class MonitoringSettings(BaseModel):
    """The scheduled monitor (``stockml monitor``, the monitor Lambda)."""

    live: LiveMetricsSettings = Field(default_factory=LiveMetricsSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    freshness: FreshnessSettings = Field(default_factory=FreshnessSettings)
    quarantine: QuarantineSettings = Field(default_factory=QuarantineSettings)
    retrain: RetrainSettings = Field(default_factory=RetrainSettings)


class DashboardSettings(BaseModel):
    """The Streamlit dashboard (``stockml dashboard``): where it listens and which API it reads.

    The dashboard itself reads ``STOCKML_DASHBOARD__API_URL`` and ``STOCKML_API_KEY`` (it is
    hosted apart from this package); ``stockml dashboard`` passes these values to it.
    """

    host: str = "127.0.0.1"
    port: int = 8501
    api_url: str = "http://127.0.0.1:8000"
    timeout_s: float = 20.0
    cache_ttl_s: float = 60.0


class Settings(BaseSettings):
    """All configuration of one process. Build it once at the entry point and pass values down."""

    model_config = SettingsConfigDict(
        env_prefix="STOCKML_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    env: Environment = "development"
    store: StoreSettings = Field(default_factory=StoreSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    universes: dict[str, UniverseSpec] = Field(default_factory=dict)
    provider_urls: ProviderUrls = Field(default_factory=ProviderUrls)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)

    # secrets: environment only (excluded from YAML by the source order below)
    alpha_vantage_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ALPHA_VANTAGE_API_KEY")
    )
    polygon_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("POLYGON_API_KEY")
    )
    api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("STOCKML_API_KEY")
    )

    @field_validator("env", mode="before")
    @classmethod
    def _env_alias(cls, value: object) -> object:
        return _ENV_ALIASES.get(value.lower(), value.lower()) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _refuse_weak_secrets(self) -> Settings:
        """Outside development, refuse a secret that is published or guessable.

        An unset (or empty) secret stays allowed: it switches its feature off (no API key
        check, a provider that is skipped), which is a choice, not a leak.
        """
        if self.env == "development":
            return self
        secrets = {
            "ALPHA_VANTAGE_API_KEY": self.alpha_vantage_api_key,
            "POLYGON_API_KEY": self.polygon_api_key,
            "STOCKML_API_KEY": self.api_key,
        }
        for name, secret in secrets.items():
            value = secret.get_secret_value().strip() if secret is not None else ""
            if not value:  # unset, or empty as in .env.example: the feature is off
                continue
            if value.lower() in _PUBLISHED_SECRETS or len(value) < MIN_SECRET_CHARS:
                raise ConfigError(
                    f"{name} is a placeholder or shorter than {MIN_SECRET_CHARS} characters; "
                    f"env {self.env!r} needs a real secret (or leave it unset)"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        folder = find_config_dir()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if folder is not None:
            sources.append(_NoSecretsYaml(settings_cls, yaml_file=folder / "config.yaml"))
        return tuple(sources)


_SECRET_KEYS = {"alpha_vantage_api_key", "polygon_api_key", "api_key", "stockml_api_key"}


class _NoSecretsYaml(YamlConfigSettingsSource):
    """YAML source that refuses secrets: they belong in the environment."""

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        leaked = _SECRET_KEYS & {str(k).lower() for k in (*data, *(self.yaml_data or {}))}
        if leaked:
            raise ConfigError(f"secrets must come from the environment, not YAML: {sorted(leaked)}")
        return data


@cache
def get_settings() -> Settings:
    """The process-wide Settings (built once; tests build their own ``Settings(...)``)."""
    return Settings()
