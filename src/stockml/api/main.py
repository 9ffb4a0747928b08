"""The app factory: ``create_app(settings, loader)`` builds the FastAPI app around one service.

The bundle is loaded ONCE, here, when the app is created (not in a lifespan hook: Mangum
with ``lifespan="auto"`` re-runs startup on every Lambda invocation). A bundle that fails to
load does not stop the app: it starts, ``/health`` answers 503 with the reason and the data
routes answer 503.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI

from stockml.api.deps import ServingState
from stockml.api.errors import install_error_handlers
from stockml.api.observability import MetricsRegistry, RequestContextMiddleware
from stockml.api.routes import info, models, predictions
from stockml.api.security import RateLimiter, install_cors
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
    app.state.metrics = MetricsRegistry()
    for router in (info.router, predictions.router, models.router):
        app.include_router(router)
    install_error_handlers(app)
    install_cors(app, settings.api.cors_origins)
    # outermost: the request id and latency cover CORS and the error handlers too
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)
    return app
