"""Service information: ``/``, ``/health``, ``/version``, ``/metrics-prom``."""

from __future__ import annotations

import os
from functools import cache
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from stockml.api.deps import StateDep
from stockml.api.models import DependencyStatus, HealthResponse, InfoResponse, VersionResponse
from stockml.api.security import require_api_key
from stockml.errors import StockmlError

router = APIRouter(tags=["service"])


@cache
def _package_version() -> str:
    try:
        return version("stockml")
    except PackageNotFoundError:
        return "0+unknown"


@router.get("/", response_model=InfoResponse, summary="API information")
async def info(request: Request) -> InfoResponse:
    # the OpenAPI paths: included routers are not flattened into app.routes any more
    paths = sorted(request.app.openapi()["paths"])
    return InfoResponse(
        name="stockml prediction API", version=_package_version(), docs="/docs", endpoints=paths
    )


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "Cannot predict; the body says why."}},
    summary="Status of each dependency",
)
def health(state: StateDep) -> JSONResponse:
    service = state.service
    if service is None:
        bundle = DependencyStatus(ok=False, detail=state.error)
    else:
        bundle = DependencyStatus(ok=True, version=service.version)
    store = DependencyStatus(ok=True)
    if service is not None:
        try:
            service.features.ping()
        except StockmlError as exc:
            store = DependencyStatus(ok=False, detail=str(exc))
    else:
        store = DependencyStatus(ok=False, detail="not checked: no bundle loaded")
    ok = bundle.ok and store.ok
    body = HealthResponse(status="ok" if ok else "unavailable", bundle=bundle, store=store)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get(
    "/version", response_model=VersionResponse, summary="Package, model version and commits"
)
async def version_info(state: StateDep) -> VersionResponse:
    manifest = state.service.predictor.manifest if state.service else None
    return VersionResponse(
        package=_package_version(),
        model_version=manifest.version if manifest else None,
        git_commit=os.environ.get("STOCKML_GIT_COMMIT"),
        model_git_commit=manifest.git_commit if manifest else None,
    )


@router.get(
    "/metrics-prom",
    response_class=PlainTextResponse,
    dependencies=[Depends(require_api_key)],
    summary="Request, error and latency counters (Prometheus text format)",
)
async def prometheus(request: Request) -> PlainTextResponse:
    return PlainTextResponse(
        request.app.state.metrics.prometheus(), media_type="text/plain; version=0.0.4"
    )
