"""Forecasts: ``POST /predict/{symbol}`` and the chart data ``GET /plot/{symbol}``."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request
from starlette.concurrency import run_in_threadpool

from stockml.api.deps import PROTECTED, ServiceDep, SymbolPath
from stockml.api.models import (
    MAX_DAYS,
    MAX_HISTORY,
    ErrorResponse,
    HistoryPoint,
    IntervalBand,
    PlotResponse,
    PredictionRequest,
    PredictionResponse,
)
from stockml.inference import Forecast
from stockml.window import BAR_FIELDS, FeatureWindow

ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (401, 404, 422, 429, 503)
}
router = APIRouter(tags=["predictions"], dependencies=PROTECTED, responses=ERRORS)


def _intervals(forecast: Forecast) -> dict[str, IntervalBand]:
    return {
        name: IntervalBand(level=f.level, lower=f.lower.tolist(), upper=f.upper.tolist())
        for name, f in forecast.models.items()
        if f.lower is not None and f.upper is not None
    }


def _history(rows: FeatureWindow) -> list[HistoryPoint]:
    """Closes, with the raw bar (open, high, low, volume) where the window carries it."""
    dates, closes = rows.dates.tolist(), rows.close.tolist()
    if rows.bars is None:
        return [HistoryPoint(date=d, close=c) for d, c in zip(dates, closes, strict=True)]
    bars = [[None if math.isnan(v) else v for v in row] for row in rows.bars.tolist()]
    return [
        HistoryPoint(date=d, close=c, **dict(zip(BAR_FIELDS, bar, strict=True)))
        for d, c, bar in zip(dates, closes, bars, strict=True)
    ]


@router.post(
    "/predict/{symbol}", response_model=PredictionResponse, summary="Predicted closes per model"
)
async def predict(
    symbol: SymbolPath,
    service: ServiceDep,
    http: Request,
    request: Annotated[PredictionRequest | None, Body()] = None,
) -> PredictionResponse:
    request = request or PredictionRequest()
    # warm requests are answered from memory on the event loop; only a cache miss (store
    # reads, a model run) goes to a worker thread, so it never blocks other requests
    forecast = service.cached_forecast(symbol, request.days, request.models)
    if forecast is None:
        forecast = await run_in_threadpool(service.forecast, symbol, request.days, request.models)
    service.record(forecast, getattr(http.state, "request_id", None), "predict")
    _scope, metrics = service.predictor.metrics_for(symbol)
    return PredictionResponse(
        symbol=symbol,
        predictions={name: f.prices.tolist() for name, f in forecast.models.items()},
        metrics={name: metrics.get(name, {}) for name in forecast.models},
        dates=list(forecast.dates),
        intervals=_intervals(forecast),
        last_close=forecast.last_close,
        last_date=forecast.last_date,
        model_version=forecast.model_version,
        data_age_sessions=forecast.age_sessions or 0,
        stale=forecast.stale,
    )


@router.get(
    "/plot/{symbol}", response_model=PlotResponse, summary="Chart data: history, predictions, bands"
)
def plot(
    symbol: SymbolPath,
    service: ServiceDep,
    http: Request,
    days: Annotated[
        int | None, Query(ge=1, le=MAX_DAYS, description="Default: the bundle's horizon.")
    ] = None,
    history: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = 120,
) -> PlotResponse:
    forecast = service.forecast(symbol, days or service.predictor.horizon)
    service.record(forecast, getattr(http.state, "request_id", None), "plot")
    rows = service.history(symbol, history).tail(history)
    return PlotResponse(
        symbol=symbol,
        model_version=forecast.model_version,
        history=_history(rows),
        dates=list(forecast.dates),
        predictions={name: f.prices.tolist() for name, f in forecast.models.items()},
        intervals=_intervals(forecast),
        data_age_sessions=forecast.age_sessions or 0,
        stale=forecast.stale,
    )
