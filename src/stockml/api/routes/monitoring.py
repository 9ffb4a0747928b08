"""The monitor's last run as this API serves it: ``GET /monitoring``."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from stockml.api.deps import PROTECTED, ServiceDep
from stockml.api.models import ErrorResponse, MonitoringResponse

ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (401, 429, 503)
}
router = APIRouter(tags=["monitoring"], dependencies=PROTECTED, responses=ERRORS)


@router.get(
    "/monitoring",
    response_model=MonitoringResponse,
    summary="Live accuracy, feature drift, data freshness, quarantine and retraining status",
)
async def monitoring(service: ServiceDep) -> MonitoringResponse:
    # 503 (StoreError) until the monitor has published a status
    status = await run_in_threadpool(service.monitoring_status)
    return MonitoringResponse.from_status(status, service.version)
