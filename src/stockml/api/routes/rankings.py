"""The universe ranking: ``GET /rankings?horizon=&top=`` (a global bundle only; else 404)."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from stockml.api.deps import PROTECTED, ServiceDep
from stockml.api.models import MAX_DAYS, ErrorResponse, LongShortCurve, RankingResponse
from stockml.errors import ValidationError as RequestError

ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (401, 404, 422, 429, 503)
}
router = APIRouter(tags=["rankings"], dependencies=PROTECTED, responses=ERRORS)


@router.get(
    "/rankings", response_model=RankingResponse, summary="The universe ordered by forecast score"
)
async def rankings(
    service: ServiceDep,
    horizon: Annotated[int, Query(ge=1, le=MAX_DAYS, description="Sessions ahead, 1..H.")] = 1,
    top: Annotated[
        int | None, Query(ge=1, le=5000, description="Only the `top` best and `top` worst.")
    ] = None,
) -> RankingResponse:
    if horizon > service.predictor.horizon:
        raise RequestError(f"horizon must be within 1..{service.predictor.horizon}, got {horizon}")
    # a computed ranking is answered from memory; reading the universe and the model run go
    # to a worker thread
    cached = service.cached_ranking()
    table = cached if cached is not None else await run_in_threadpool(service.ranking)
    order = [int(i) for i in table.order(horizon)]
    if top is not None and 2 * top < len(order):
        order = [*order[:top], *order[len(order) - top :]]
        ranks = [*range(1, top + 1), *range(len(table.symbols) - top + 1, len(table.symbols) + 1)]
    else:
        ranks = list(range(1, len(order) + 1))
    h = horizon - 1
    rows = [
        {
            "symbol": table.symbols[i],
            "rank": rank,
            "score": float(table.scores[i, h]),
            "expected_return": math.expm1(table.returns[i, h]),
            "lower": None if table.lower is None else math.expm1(table.lower[i, h]),
            "upper": None if table.upper is None else math.expm1(table.upper[i, h]),
            "last_close": float(table.last_close[i]),
        }
        for i, rank in zip(order, ranks, strict=True)
    ]
    age, stale = service.freshness("the universe", table.as_of)
    return RankingResponse.model_validate(
        {
            "model_version": table.model_version,
            "model": table.model,
            "horizon": horizon,
            "as_of": table.as_of,
            "level": table.level,
            "n_ranked": len(table.symbols),
            "n_excluded": table.excluded,
            "data_age_sessions": age,
            "stale": stale,
            "rankings": rows,
            **_walk_forward(service.predictor.bundle.metrics),
        }
    )


def _walk_forward(metrics: dict[str, Any]) -> dict[str, Any]:
    """The bundle's walk-forward figures of its ranking (``metrics.json`` ``ranking``)."""
    block = metrics.get("ranking")
    if not isinstance(block, dict):
        return {}
    keys = (
        "rank_ic",
        "rank_ic_t",
        "long_short_sharpe_net",
        "turnover",
        "best_factor",
        "best_factor_rank_ic",
    )
    out: dict[str, Any] = {k: block.get(k) for k in keys}
    try:
        curve = block.get("long_short")
        out["long_short"] = None if curve is None else LongShortCurve.model_validate(curve)
    except ValidationError:
        out["long_short"] = None
    return out
