"""The one source of model settings: the pydantic models of ``configs/model_config.yaml``.

Every default lives here once. The YAML repeats them (a test asserts YAML == these defaults),
and the model constructors take these objects instead of keyword defaults of their own, so a
value cannot drift between the file, the config model and the code that uses it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stockml.errors import ConfigError
from stockml.settings import load_yaml_config


class _Section(BaseModel):
    # a misspelt key in the YAML is an error, not a silently ignored setting
    model_config = ConfigDict(extra="forbid")


class RuntimeConfig(_Section):
    """Where and how reproducibly models train (shared by every model)."""

    seed: int = 42
    device: str = "auto"  # auto = cuda when torch sees a GPU, else cpu
    n_threads: int | None = None  # None = the libraries' defaults


class LSTMConfig(_Section):
    hidden_size: int = 32
    num_layers: int = 1
    dropout: float = 0.0
    learning_rate: float = 1e-3
    batch_size: int = 256
    max_epochs: int = 20
    patience: int = 3


class XGBoostConfig(_Section):
    n_estimators: int = 400
    max_depth: int = 4
    learning_rate: float = 0.03
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    early_stopping_rounds: int = 40


class LightGBMConfig(_Section):
    n_estimators: int = 400
    num_leaves: int = 15
    learning_rate: float = 0.03
    min_data_in_leaf: int = 40
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    early_stopping_rounds: int = 40
    device: str = "cpu"  # gpu needs a GPU-enabled LightGBM build; falls back to cpu


class EnsembleConfig(_Section):
    # the naive and drift forecasts join the members: a weight on them shrinks the learned
    # models toward the baselines when validation says they are no better
    include_baselines: bool = True


class EvaluationConfig(_Section):
    n_folds: int = 3
    test_fraction: float = 0.3
    val_fraction: float = 0.15
    calibration_fraction: float = 0.25
    # refit every model on all labelled history with the iterations chosen on validation
    refit: bool = True
    cost_bps: float = 5.0
    # sessions between the signal's close and the close the backtest trades at (0 = the
    # signal's own close, optimistic: the features of a session exist only after it closes)
    execution_lag: int = 1


class IntervalConfig(_Section):
    level: float = 0.9
    # raw feature columns whose root mean square scales the conformal residuals (the band
    # widens with recent volatility); empty = fixed-width bands
    scale_features: list[str] = Field(default_factory=lambda: ["volatility_20", "atr_ratio"])


class PromotionConfig(_Section):
    """Thresholds of the promotion gate (``stockml.gate``): a champion needs evidence."""

    model: str = "ensemble"
    horizons: list[int] = Field(default_factory=lambda: [1])
    max_dm_pvalue: float = 0.05
    min_test_sessions: int = 500
    min_folds: int = 3
    min_folds_beating_baselines: int = 2
    require_sharpe_vs_buy_and_hold: bool = True
    coverage_range: tuple[float, float] = (0.85, 0.95)
    parity_tolerance: float = 1e-4
    champion_max_pvalue: float = 0.05
    champion_min_sessions: int = 20
    # universe bundles only (a cross-sectional ranking), on the walk-forward test rows:
    min_rank_ic_t: float = 2.0  # Newey-West t of the mean daily rank IC
    min_long_short_sharpe: float = 0.0  # net long-short Sharpe must be ABOVE this
    # the paired daily rank IC difference to the best classic single factor: its t
    min_rank_ic_t_vs_best_factor: float = 2.0

    @model_validator(mode="after")
    def _check(self) -> PromotionConfig:
        lo, hi = self.coverage_range
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(
                f"coverage_range must be 0 <= lo <= hi <= 1, got {self.coverage_range}"
            )
        if not self.horizons or min(self.horizons) < 1:
            raise ValueError("promotion.horizons must name horizons >= 1")
        return self


def _default_factors() -> dict[str, str]:
    return {
        "reversal_1": "-xs_logret_1",
        "reversal_5": "-xs_logret_5",
        "momentum_12_1": "xs_momentum",
        "low_volatility": "-xs_volatility",
    }


def _default_overrides() -> dict[str, Any]:
    return {
        "history_sessions": None,
        "lstm": {"batch_size": 2048, "max_epochs": 8, "patience": 2, "learning_rate": 0.003},
        "xgboost": {"n_estimators": 300, "learning_rate": 0.05, "early_stopping_rounds": 30},
        "lightgbm": {
            "n_estimators": 300,
            "learning_rate": 0.05,
            "num_leaves": 31,
            "min_data_in_leaf": 200,
            "early_stopping_rounds": 30,
        },
    }


class UniverseConfig(_Section):
    """Universe mode (``stockml train|evaluate --universe NAME``): one global model that ranks.

    The models learn a target relative to the universe (``target``) and stop early on the
    validation slice's mean daily rank IC; the walk-forward report adds the cross-sectional
    figures (``stockml.ranking``) and the gate its universe checks (``promotion``).
    """

    # rank: the per-date centred percentile of the forward return among the universe;
    # excess: the forward log return less the universe's equal-weight mean of that date
    target: Literal["rank", "excess"] = "rank"
    quantile: float = Field(default=0.1, gt=0.0, le=0.5)  # long-short: top and bottom decile
    top_k: int = Field(default=20, ge=1)  # long-only: the k best vs the equal-weight universe
    min_names: int = Field(default=20, ge=3)  # fewer scored names on a date: left out
    execution_lags: list[int] = Field(default_factory=lambda: [0, 1])
    # classic single factors scored on the same rows: name -> feature column, "-" = reversed
    factors: dict[str, str] = Field(default_factory=_default_factors)
    # model_config keys that take other values in universe mode (deep-merged)
    overrides: dict[str, Any] = Field(default_factory=_default_overrides)


class ModelConfig(RuntimeConfig):
    """``configs/model_config.yaml``: which models, their hyper-parameters, how to judge them."""

    window: int = 60
    # sessions per symbol to learn from (the most recent); None = the whole history
    history_sessions: int | None = 2520
    models: list[str] = Field(default_factory=lambda: ["lstm", "xgboost", "lightgbm"])
    lstm: LSTMConfig = Field(default_factory=LSTMConfig)
    xgboost: XGBoostConfig = Field(default_factory=XGBoostConfig)
    lightgbm: LightGBMConfig = Field(default_factory=LightGBMConfig)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    intervals: IntervalConfig = Field(default_factory=IntervalConfig)
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    universe: UniverseConfig = Field(default_factory=UniverseConfig)
    # set by ``for_universe()``: train one ranking model over a universe (not a YAML key)
    universe_mode: bool = Field(default=False, exclude=True)

    @property
    def runtime(self) -> RuntimeConfig:
        return RuntimeConfig(seed=self.seed, device=self.device, n_threads=self.n_threads)

    def for_universe(self) -> ModelConfig:
        """This configuration in universe mode: ``universe.overrides`` deep-merged into it.

        Raises:
            ConfigError: an override names an unknown key or gives an invalid value.
        """
        merged = _deep_merge(self.model_dump(mode="json"), self.universe.overrides)
        try:
            return ModelConfig.model_validate({**merged, "universe_mode": True})
        except ValueError as exc:
            raise ConfigError(f"invalid universe.overrides: {exc}") from exc

    @classmethod
    def from_yaml(cls, **overrides: Any) -> ModelConfig:
        """``configs/model_config.yaml`` (defaults where absent), top-level keys overridden.

        Raises:
            ConfigError: unknown keys or invalid values.
        """
        try:
            return cls.model_validate({**load_yaml_config("model_config.yaml"), **overrides})
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise ConfigError(f"invalid model_config.yaml: {exc}") from exc


def _deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied: nested mappings merged key by key."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
