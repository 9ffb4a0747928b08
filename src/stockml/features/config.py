"""FeatureConfig: which features the library computes (``configs/feature_config.yaml``).

The config is a plain pydantic model: ``config.model_dump()`` is stored in the bundle's
``FeatureSpec.feature_config`` and ``FeatureConfig(**d)`` rebuilds exactly the same features
at serving time, without the YAML file.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stockml.errors import ConfigError
from stockml.settings import load_yaml_config


class MacdConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fast: int = Field(default=12, ge=1)
    slow: int = Field(default=26, ge=2)
    signal: int = Field(default=9, ge=1)


class BollingerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    window: int = Field(default=20, ge=2)
    std: float = Field(default=2.0, gt=0)


class StochasticConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    window: int = Field(default=14, ge=2)
    smooth: int = Field(default=3, ge=1)


class MarketConfig(BaseModel):
    """Index series joined as market context (as-of, bounded forward-fill)."""

    model_config = ConfigDict(extra="forbid")
    symbols: list[str] = Field(default_factory=lambda: ["^GSPC", "^IXIC", "^VIX"])
    # volatility indices are joined as a level and its change, not as price returns
    volatility_symbols: list[str] = Field(default_factory=lambda: ["^VIX"])
    max_ffill_sessions: int = Field(default=3, ge=0)


class NewsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    window: int = Field(default=5, ge=1)


class CrossSectionConfig(BaseModel):
    """Per-date features across the universe (``stockml.features.cross_section``)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    # rank: centred percentile in [-0.5, 0.5]; zscore: (x - mean) / std, clipped to +-3
    normalize: Literal["rank", "zscore"] = "rank"
    # a date with fewer peers than this gets neutral 0s (a single-symbol run: all 0)
    min_peers: int = Field(default=10, ge=2)
    reversal_windows: list[int] = Field(default_factory=lambda: [1, 5])
    # 12-1 momentum: the log return from `lookback` to `skip` sessions ago
    momentum_lookback: int = Field(default=252, ge=2)
    momentum_skip: int = Field(default=21, ge=0)
    volatility_window: int = Field(default=20, ge=2)
    # dollar volume and Amihud illiquidity (mean |return| per dollar traded)
    liquidity_window: int = Field(default=20, ge=1)

    @field_validator("reversal_windows")
    @classmethod
    def _positive_windows(cls, value: list[int]) -> list[int]:
        if any(w < 1 for w in value):
            raise ValueError("windows must be >= 1")
        return sorted(set(value))

    @model_validator(mode="after")
    def _skip_inside_lookback(self) -> CrossSectionConfig:
        if self.momentum_skip >= self.momentum_lookback:
            raise ValueError("momentum_skip must be shorter than momentum_lookback")
        return self

    def longest_window(self) -> int:
        """Sessions of history the longest signal reads (momentum, usually)."""
        return max(
            [
                *self.reversal_windows,
                self.momentum_lookback,
                self.volatility_window,
                self.liquidity_window + 1,
            ]
        )


class FeatureConfig(BaseModel):
    """Windows and switches of every feature group; defaults equal ``configs/feature_config.yaml``."""

    model_config = ConfigDict(extra="forbid")

    horizon: int = Field(default=5, ge=1)
    sma_windows: list[int] = Field(default_factory=lambda: [5, 10, 20, 50])
    ema_windows: list[int] = Field(default_factory=lambda: [5, 10, 20, 50])
    return_windows: list[int] = Field(default_factory=lambda: [1, 5, 20])
    volatility_windows: list[int] = Field(default_factory=lambda: [5, 20])
    rsi_window: int = Field(default=14, ge=2)
    macd: MacdConfig = Field(default_factory=MacdConfig)
    bollinger: BollingerConfig = Field(default_factory=BollingerConfig)
    atr_window: int = Field(default=14, ge=2)
    roc_window: int = Field(default=10, ge=1)
    stochastic: StochasticConfig = Field(default_factory=StochasticConfig)
    volume_window: int = Field(default=20, ge=2)
    market: MarketConfig = Field(default_factory=MarketConfig)
    news: NewsConfig = Field(default_factory=NewsConfig)
    cross_section: CrossSectionConfig = Field(default_factory=CrossSectionConfig)
    lookback_sessions: int = Field(default=600, ge=1)
    # rows of each symbol's latest feature window, the API's only feature source: at least the
    # longest model window and the longest chart history (stockml.window)
    serving_rows: int = Field(default=1000, ge=1)
    # rows per symbol of the universe's latest-rows object (features/_universe/latest.npz),
    # what GET /rankings reads: at least the window of the models that rank (cut from the
    # windows: at most serving_rows)
    ranking_rows: int = Field(default=60, ge=1)

    @field_validator("sma_windows", "ema_windows", "return_windows", "volatility_windows")
    @classmethod
    def _positive_windows(cls, value: list[int]) -> list[int]:
        if any(w < 1 for w in value):
            raise ValueError("windows must be >= 1")
        return sorted(set(value))

    @model_validator(mode="after")
    def _lookback_covers_cross_section(self) -> FeatureConfig:
        # an incremental update must see every row a new day's signals read, or it differs
        # from a full recompute
        if (
            self.cross_section.enabled
            and self.lookback_sessions <= self.cross_section.longest_window()
        ):
            raise ValueError(
                f"lookback_sessions ({self.lookback_sessions}) must exceed the longest "
                f"cross-section window ({self.cross_section.longest_window()})"
            )
        return self

    @classmethod
    def from_yaml(cls, name: str = "feature_config.yaml") -> FeatureConfig:
        """Load ``configs/<name>``; the code defaults when the file is absent.

        Raises:
            ConfigError: the file holds unknown keys or invalid values.
        """
        try:
            return cls(**load_yaml_config(name))
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise ConfigError(f"invalid {name}: {exc}") from exc

    def warmup_rows(self) -> int:
        """Rows of one symbol consumed before every price feature is defined."""
        return (
            max(
                [
                    *self.sma_windows,
                    *self.ema_windows,
                    *(w + 1 for w in self.return_windows),
                    *(w + 1 for w in self.volatility_windows),
                    self.rsi_window + 1,
                    self.macd.slow + self.macd.signal - 1,
                    self.bollinger.window,
                    self.atr_window,
                    self.roc_window + 1,
                    self.stochastic.window + self.stochastic.smooth - 1,
                    self.volume_window + 1,
                ]
            )
            - 1
        )


def market_name(symbol: str) -> str:
    """Column-safe name of a market symbol: ``^GSPC`` -> ``gspc``."""
    name = re.sub(r"[^0-9a-z]+", "_", symbol.lower()).strip("_")
    if not name:
        raise ConfigError(f"market symbol {symbol!r} gives no column name")
    return name
