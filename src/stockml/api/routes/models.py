"""What can be predicted and how well: ``GET /symbols`` and ``GET /metrics/{symbol}``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError

from stockml.api.deps import PROTECTED, ServiceDep, SymbolPath
from stockml.api.models import (
    EquityCurve,
    ErrorResponse,
    LiveMetrics,
    MetricsResponse,
    SymbolInfo,
    SymbolsResponse,
    Window,
)
from stockml.errors import StoreError
from stockml.inference import PredictionService

ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (401, 404, 422, 429, 503)
}
router = APIRouter(tags=["models"], dependencies=PROTECTED, responses=ERRORS)


@router.get(
    "/symbols", response_model=SymbolsResponse, summary="Symbols with a model and stored features"
)
def symbols(service: ServiceDep) -> SymbolsResponse:
    return SymbolsResponse(
        model_version=service.version,
        symbols=[
            SymbolInfo(
                symbol=s.symbol,
                last_date=s.last_date,
                age_sessions=s.age_sessions,
                fresh=s.fresh,
            )
            for s in service.symbols()
        ],
    )


@router.get(
    "/metrics/{symbol}",
    response_model=MetricsResponse,
    summary="Model metrics beside the baselines",
)
async def metrics(symbol: SymbolPath, service: ServiceDep) -> MetricsResponse:
    service.check_symbol(symbol)
    scope, table = service.predictor.metrics_for(symbol)
    models = set(service.predictor.model_names)
    return MetricsResponse(
        symbol=symbol,
        model_version=service.version,
        scope=scope,  # type: ignore[arg-type]
        models={k: v for k, v in table.items() if k in models},
        baselines={k: v for k, v in table.items() if k not in models},
        **_bundle_extras(service.predictor.bundle.metrics),
        live=_live(service, symbol),
    )


def _live(service: PredictionService, symbol: str) -> LiveMetrics | None:
    """This version's live figures for ``symbol`` from the monitor's last run, if any.

    Optional like the extras: a store that cannot answer, or a block that does not parse,
    gives ``null`` (the backtest figures are still served).
    """
    if service.monitoring is None:
        return None
    try:
        published = service.monitoring.live(symbol)
    except StoreError:
        return None
    if not published:
        return None
    block = (published.get("versions") or {}).get(service.version)
    if block is None:
        return None
    try:
        return LiveMetrics.model_validate(
            {
                **block,
                "run_date": published.get("run_date"),
                "window": Window.parse(block.get("window")),
            }
        )
    except ValidationError:
        return None


def _bundle_extras(raw: dict[str, Any]) -> dict[str, Any]:
    """The gate verdict and the backtest equity curve, when ``metrics.json`` holds them.

    Both are optional: a bundle without them (or with a block that does not parse) answers
    ``null`` rather than failing the whole response.
    """
    gate = raw.get("gate")
    try:
        curve = EquityCurve.model_validate(raw["equity_curve"]) if "equity_curve" in raw else None
    except ValidationError:
        curve = None
    return {"gate": gate if isinstance(gate, dict) else None, "equity_curve": curve}
