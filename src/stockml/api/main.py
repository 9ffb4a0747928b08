"""The app factory: ``create_app(settings, loader)`` builds the FastAPI app around one service.

The bundle is loaded ONCE, here, when the app is created (not in a lifespan hook: Mangum
with ``lifespan="auto"`` re-runs startup on every Lambda invocation), and each of its models
is test-run once. A bundle that fails to load or run does not stop the app: it starts,
``/health`` answers 503 with the reason and the data routes answer 503.

The OpenAPI schema describes what this app serves: ``days`` up to the loaded bundle's horizon,
``models`` among its model names, and the ``X-API-Key`` scheme only when a key is set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from stockml.api.deps import ServingState
from stockml.api.errors import install_error_handlers
from stockml.api.observability import MetricsRegistry, RequestContextMiddleware
from stockml.api.routes import info, models, monitoring, predictions, rankings
from stockml.api.security import BodyLimitMiddleware, RateLimiter, install_cors, parse_networks
from stockml.inference import PredictionService, describe, load_service
from stockml.settings import Settings

logger = logging.getLogger(__name__)

ServiceLoader = Callable[[Settings], PredictionService]


def load_state(settings: Settings, loader: ServiceLoader = load_service) -> ServingState:
    """Run ``loader`` once; a failure becomes the state's ``error`` instead of an exception."""
    try:
        return ServingState(settings=settings, service=loader(settings), error=None)
    except Exception as exc:  # noqa: BLE001 - the app must start to say why it cannot predict
        logger.error("model bundle not loaded: %s", describe(exc))
        return ServingState(settings=settings, service=None, error=describe(exc))


def create_app(
    settings: Settings, loader: ServiceLoader = load_service, state: ServingState | None = None
) -> FastAPI:
    """Build the API.

    Args:
        settings: the process settings (API key, CORS, rate limit, store, bundle source).
        loader: builds the PredictionService (called once, unless ``state`` is given).
        state: an already loaded state (e.g. shared by several apps in a benchmark).
    """
    app = FastAPI(
        title="stockml prediction API",
        summary="Daily stock price forecasts from an ONNX model bundle.",
        version="1",
    )
    app.state.serving = state or load_state(settings, loader)
    app.state.api_key = settings.api_key.get_secret_value() if settings.api_key else None
    app.state.rate_limiter = RateLimiter(settings.api.rate_limit_per_minute)
    app.state.trusted_proxies = parse_networks(settings.api.trusted_proxies)
    app.state.metrics = MetricsRegistry()
    for router in (
        info.router,
        predictions.router,
        models.router,
        monitoring.router,
        rankings.router,
    ):
        app.include_router(router)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api.max_body_bytes)
    install_cors(app, settings.api.cors_origins)
    # outermost: the request id and latency cover CORS and the error handlers too
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)
    _describe_served_schema(app)
    return app


def _describe_served_schema(app: FastAPI) -> None:
    """Narrow the generated OpenAPI schema to what this app serves (computed once)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        service = app.state.serving.service
        if service is not None:
            horizon = service.predictor.horizon
            components = schema.get("components", {}).get("schemas", {})
            request = components.get("PredictionRequest", {}).get("properties", {})
            _set(request.get("days", {}), "maximum", horizon)
            _set(request.get("models", {}), "enum", service.predictor.model_names, in_items=True)
            for parameter in schema["paths"]["/plot/{symbol}"]["get"].get("parameters", []):
                if parameter["name"] == "days":
                    _set(parameter["schema"], "maximum", horizon)
        if app.state.api_key is None:
            # the key is not checked: no client should be told to send one
            schema.get("components", {}).pop("securitySchemes", None)
            for operations in schema["paths"].values():
                for operation in operations.values():
                    operation.pop("security", None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _set(node: dict[str, Any], key: str, value: object, in_items: bool = False) -> None:
    """Set ``key`` on a property schema, or on each non-null branch of its ``anyOf``."""
    for branch in node.get("anyOf", [node]):
        if branch.get("type") == "null":
            continue
        target = branch.get("items", {}) if in_items else branch
        target[key] = value
