"""Request and response models of the prediction API (they make its OpenAPI schema).

``PredictionResponse`` keeps the response's original contract (``symbol``, ``predictions`` as
``{model: [close, ...]}``, ``metrics`` as ``{model: {...}}``) and adds the forecast dates,
intervals, the last close used, its date and the model version beside them.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

# the one symbol pattern of the CLI, the providers, the store and the API
from stockml.symbols import SYMBOL_PATTERN as SYMBOL_PATTERN

# the static bound of the schema; the app's OpenAPI schema narrows it to the loaded bundle's
# horizon H, which is what each request is checked against
MAX_DAYS = 30
MAX_HISTORY = 1000
MAX_MODEL_NAME = 64

ModelMetrics = dict[str, float | None]


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable error code, e.g. unknown_symbol.")
    message: str
    request_id: str | None = None
    details: list[dict[str, object]] | None = None


class ErrorResponse(BaseModel):
    """Body of every 4xx/5xx answer."""

    error: ErrorDetail


class PredictionRequest(BaseModel):
    """Body of ``POST /predict/{symbol}``."""

    days: int = Field(
        default=1, ge=1, le=MAX_DAYS, description="Sessions ahead, 1..H of the bundle."
    )
    models: list[Annotated[str, Field(max_length=MAX_MODEL_NAME)]] | None = Field(
        default=None,
        min_length=1,
        max_length=16,
        description="Model names; default all and the ensemble.",
    )

    model_config = {"extra": "forbid"}


class IntervalBand(BaseModel):
    """Price bounds per forecast day at ``level`` (conformal residual quantiles)."""

    level: float | None
    lower: list[float]
    upper: list[float]


class PredictionResponse(BaseModel):
    symbol: str
    predictions: dict[str, list[float]] = Field(
        description="Predicted closes per model, one per date."
    )
    metrics: dict[str, ModelMetrics] = Field(
        description="Evaluation metrics per model (from the bundle)."
    )
    dates: list[date] = Field(description="NYSE sessions the predictions are for.")
    intervals: dict[str, IntervalBand]
    last_close: float
    last_date: date
    model_version: str
    data_age_sessions: int = Field(
        description="NYSE sessions completed since last_date (0: the features are current)."
    )
    stale: bool = Field(
        description="data_age_sessions is above the server's api.max_feature_age_sessions."
    )


class HistoryPoint(BaseModel):
    date: date
    close: float
    # the raw bar, for candlesticks; null when the stored feature window does not carry it
    open: float | None = None
    high: float | None = None
    low: float | None = None
    volume: float | None = None


class PlotResponse(BaseModel):
    """What a chart needs: recent closes, predictions per model, interval bands."""

    symbol: str
    model_version: str
    history: list[HistoryPoint]
    dates: list[date]
    predictions: dict[str, list[float]]
    intervals: dict[str, IntervalBand]
    data_age_sessions: int = Field(description="NYSE sessions completed since the last close.")
    stale: bool = Field(description="data_age_sessions is above api.max_feature_age_sessions.")


class EquityCurve(BaseModel):
    """Daily equity of the long/flat backtest of ``model`` and of buy-and-hold (start at 1)."""

    model: str | None = None
    dates: list[date]
    strategy: list[float]
    buy_and_hold: list[float]


# one horizon's live figures: numbers, and ``best_baseline``'s name
LiveFigures = dict[str, float | int | str | None]


class Window(BaseModel):
    """Sessions a figure covers."""

    sessions: int
    start: date | None = None
    end: date | None = None

    @classmethod
    def parse(cls, raw: dict[str, Any] | None) -> Window | None:
        """From the monitor's ``{"sessions", "from", "to"}``."""
        if not raw:
            return None
        return cls(sessions=raw.get("sessions", 0), start=raw.get("from"), end=raw.get("to"))


class LiveSeries(BaseModel):
    """Rolling live figures per session (each over the preceding ``series_sessions``)."""

    dates: list[date]
    rmse_ratio_vs_naive: list[float | None]
    rmse_ratio_vs_drift: list[float | None]
    directional_accuracy: list[float | None]
    directional_accuracy_always_long: list[float | None]
    interval_coverage: list[float | None]
    n: list[int]


class LiveMetrics(BaseModel):
    """Served forecasts of this model version scored against the realised prices."""

    run_date: date = Field(description="The monitor run these figures come from.")
    window: Window | None = Field(description="The sessions scored (forecast dates).")
    models: dict[str, dict[str, LiveFigures]] = Field(
        description="Per model (and the naive and drift baselines on the same rows), per "
        "horizon: RMSE and its ratios to naive, drift and the better baseline (one-sided DM "
        "p-value), directional accuracy beside always-long's, interval coverage and width."
    )
    series: dict[str, dict[str, LiveSeries]] = Field(
        default_factory=dict, description="Per model and horizon: the figures over time."
    )


class MetricsResponse(BaseModel):
    symbol: str
    model_version: str
    scope: Literal["symbol", "pooled"] = Field(
        description="Metrics of this symbol, or pooled over symbols."
    )
    models: dict[str, ModelMetrics]
    baselines: dict[str, ModelMetrics]
    gate: dict[str, Any] | None = Field(
        default=None, description="The promotion gate's verdict as the bundle recorded it."
    )
    equity_curve: EquityCurve | None = Field(
        default=None, description="Walk-forward backtest equity (pooled), when the bundle has it."
    )
    live: LiveMetrics | None = Field(
        default=None,
        description="The served forecasts' live figures (the monitor's last run), beside the "
        "backtest ones above; null until the monitor has scored this symbol's forecasts.",
    )


class DriftFeature(BaseModel):
    psi: float
    null_psi: float | None = Field(description="What the training windows' own PSI reached.")
    threshold: float
    drifted: bool


class DriftStatus(BaseModel):
    """Feature drift: PSI of the recent window vs the bundle's training distribution."""

    window: Window | None
    drift: bool | None = Field(description="null: too few sessions to tell.")
    drifted: list[str]
    drifted_share: float | None
    checked: int
    max_psi: float | None
    psi_threshold: float
    null_quantile: float
    max_drifted_share: float
    features: dict[str, DriftFeature]
    reason: str | None = None


class SymbolFreshness(BaseModel):
    last_date: date
    age_sessions: int
    stale: bool


class FreshnessStatus(BaseModel):
    expected_session: date = Field(description="The last NYSE session completed at the run.")
    max_age_sessions: int
    fresh: bool
    stale: list[str]
    symbols: dict[str, SymbolFreshness]


class QuarantineStatus(BaseModel):
    window: Window | None
    quarantined_rows: int
    stored_rows: int
    share: float | None
    max_share: float
    alarm: bool
    reasons: dict[str, int]


class RetrainCheck(BaseModel):
    name: str
    value: float | None
    threshold: float | list[float] | None
    sessions: int | None
    state: Literal["ok", "retrain", "not enough data"]
    rule: str


class RetrainStatus(BaseModel):
    retrain: bool = Field(description="A threshold was passed: training is (to be) triggered.")
    reasons: list[str]
    checks: list[RetrainCheck]
    trigger: dict[str, Any] | None = Field(
        description="The day's trigger (job id or local training result), its cooldown, or null."
    )


class LiveSummary(BaseModel):
    window: Window | None
    served: int = Field(description="Served (symbol, session) forecasts in the lookback.")
    pending: int = Field(description="... of which no outcome is realised yet.")
    models: dict[str, dict[str, LiveFigures]] = Field(
        description="Per model and baseline, per horizon, pooled over the symbols."
    )


class MonitoringResponse(BaseModel):
    """The monitor's last run: live accuracy, drift, freshness, quarantine, retraining."""

    run_date: date
    model_version: str = Field(description="The model version this API serves.")
    monitored_version: str | None = Field(description="The version the monitor watched.")
    gated_model: str
    live: LiveSummary | None = Field(description="This API's version's live figures.")
    drift: DriftStatus | None
    freshness: FreshnessStatus
    quarantine: QuarantineStatus
    retrain: RetrainStatus

    @classmethod
    def from_status(cls, status: dict[str, Any], model_version: str) -> MonitoringResponse:
        """From the monitor's published ``status.json``."""
        live = (status.get("live") or {}).get(model_version)
        drift = status.get("drift")
        return cls(
            run_date=status["run_date"],
            model_version=model_version,
            monitored_version=status.get("monitored_version"),
            gated_model=status.get("gated_model", ""),
            live=None
            if live is None
            else LiveSummary(**{**live, "window": Window.parse(live.get("window"))}),
            drift=None
            if drift is None
            else DriftStatus(**{**drift, "window": Window.parse(drift.get("window"))}),
            freshness=FreshnessStatus(**status["freshness"]),
            quarantine=QuarantineStatus(
                **{
                    **status["quarantine"],
                    "window": Window.parse(status["quarantine"].get("window")),
                }
            ),
            retrain=RetrainStatus(**status["retrain"]),
        )


class RankedSymbol(BaseModel):
    """One symbol of the ranking: its place, score and forecast return over ``horizon``."""

    symbol: str
    rank: int = Field(description="1 = the best score of the universe.")
    score: float = Field(description="The ranking model's score (orders the universe).")
    expected_return: float = Field(
        description="Forecast simple return over the horizon derived from the score."
    )
    lower: float | None = Field(description="Lower bound of the return's interval.")
    upper: float | None = Field(description="Upper bound of the return's interval.")
    last_close: float


class LongShortCurve(BaseModel):
    """Walk-forward equity (from 1) of the long-short portfolio of the ranking, net of costs."""

    dates: list[date]
    equity: list[float]


class RankingResponse(BaseModel):
    """``GET /rankings``: the universe ordered by score, with the bundle's walk-forward figures."""

    model_version: str
    model: str
    horizon: int
    as_of: date = Field(description="The session of the features every ranked symbol shares.")
    level: float | None = Field(description="Nominal coverage of the intervals.")
    n_ranked: int
    n_excluded: int = Field(
        description="Symbols of the universe not ranked (older last date, too few rows)."
    )
    data_age_sessions: int
    stale: bool
    rankings: list[RankedSymbol] = Field(
        description="Best first: every symbol, or the top and the bottom `top` when asked."
    )
    rank_ic: float | None = Field(
        default=None, description="Walk-forward mean daily rank IC (horizon 1)."
    )
    rank_ic_t: float | None = Field(default=None, description="Its Newey-West t-statistic.")
    long_short_sharpe_net: float | None = None
    turnover: float | None = None
    best_factor: str | None = None
    best_factor_rank_ic: float | None = None
    long_short: LongShortCurve | None = None


class SymbolInfo(BaseModel):
    symbol: str
    last_date: date
    age_sessions: int
    fresh: bool


class SymbolsResponse(BaseModel):
    model_version: str
    symbols: list[SymbolInfo]


class DependencyStatus(BaseModel):
    ok: bool
    detail: str | None = None
    version: str | None = None


class HealthResponse(BaseModel):
    status: Literal["ok", "unavailable"]
    bundle: DependencyStatus
    store: DependencyStatus


class VersionResponse(BaseModel):
    package: str
    model_version: str | None
    git_commit: str | None = Field(description="Commit of the serving code (STOCKML_GIT_COMMIT).")
    model_git_commit: str | None = Field(description="Commit the bundle was trained from.")


class InfoResponse(BaseModel):
    name: str
    version: str
    docs: str
    endpoints: list[str]
